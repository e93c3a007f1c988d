"""Folding: how much parallelism each layer gets, and what that costs.

A folding assigns every convolution a ``simd`` (input lanes per beat) and ``pe`` (output channels
computed in parallel), and every max-pool a ``lanes`` count.  It is a small JSON file
(``squeezehw-folding`` v1) so that a design can be rebuilt exactly.  This module also holds the
per-layer cost model used before any hardware exists: cycles per frame
(``pixels * (K*K*C / simd) * (O / pe)`` for a matrix-vector unit), multipliers (``pe * simd``)
and weight memory bits, and ``auto_fold`` which balances the pipeline: the slowest layer sets the
frame rate, so every layer gets the fewest multipliers that keep it at or below a target.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from math import gcd
from pathlib import Path

from ..errors import UserError
from ..frontend.ir import conv_out_size, pool_out_size
from ..quant.intmodel import IntModel, QConv, QFire, QHead, QMaxPool

FORMAT = "squeezehw-folding"
VERSION = 1


class FoldingFileError(UserError):
    """A folding that does not fit the model: wrong layer names, factors that do not divide."""


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def fire_out_lanes(fire, folds) -> int:
    """Lanes of a Fire module's concat/add output (``folds``: conv name -> LayerFold).

    The smallest common divisor of both expand widths that is at least the wider expand PE and
    carries a pixel's ``e1 + e3`` channels in at most half as many beats as the slower expand unit
    takes cycles per pixel, so the concat (one beat per cycle) never sets the pace and has room to
    catch up after a stall; the largest common divisor when none qualifies.  (Without the second
    rule a 3x3 expand folded as SIMD 144 x PE 1 gave a 1-lane concat that halved the frame rate of
    SqueezeNet v1.1 at 2,000 multipliers.)"""
    e1, e3 = fire.expand1x1.out_ch, fire.expand3x3.out_ch
    f1, f3 = folds[fire.expand1x1.name], folds[fire.expand3x3.name]
    n1 = fire.expand1x1.kernel ** 2 * fire.squeeze.out_ch
    n3 = fire.expand3x3.kernel ** 2 * fire.squeeze.out_ch
    pixel_cycles = max((n1 // f1.simd) * (e1 // f1.pe), (n3 // f3.simd) * (e3 // f3.pe))
    common = [d for d in divisors(e1) if e3 % d == 0]
    wide = [d for d in common if d >= max(f1.pe, f3.pe) and 2 * (e1 + e3) <= d * pixel_cycles]
    return min(wide) if wide else max(common)


def window_lanes(channels: int, simd: int, folds: int = 1) -> int:
    """Lanes of the sliding window in front of a KxK conv whose MVU takes ``simd`` lanes and
    computes each input vector in ``folds`` (= out_channels / pe) passes.

    ``simd`` itself when it divides the channels (the window feeds the MVU directly); otherwise
    every channel (one kernel tap per beat), and a Resize regroups the ``K*K*C`` window vector
    into ``simd``-lane beats.  So a KxK conv's SIMD may be any divisor of ``K*K*C``: with
    power-of-two channel counts the divisors of ``C`` alone step by 2x, which left up to half of
    a layer's multipliers idle once the pipeline was balanced (e.g. 9 or 12 for a 3x3 conv on 16
    channels).  Where that Resize would need the general shift design (hw/resize.py, e.g. 40 ->
    3 lanes: a 45-lane shift buffer, the large ULX3S member's critical path at 75.39 MHz), the
    window takes ``gcd(C, simd)`` lanes instead, so the Resize only widens, if the MVU's folds
    leave the window time for its ``simd / gcd`` times more beats (``simd / gcd <= folds``: then
    the MVU, not the window, still sets the stage's rate).  The same where the Resize would be a
    ring: a window of every channel keeps its line buffer ``C`` lanes wide and only a few words
    deep (64 channels at 27 pixels: 512 bits x 108 words, 15 Tang Mega BSRAMs for 55 Kbit; at 8
    lanes 4), and the ring's slot register is ``lcm``-sized."""
    if channels % simd == 0:
        return simd
    from ..hw.resize import Resize
    lanes = gcd(channels, simd)
    if Resize.design(channels, simd)[0] in ("shift", "ring") and simd // lanes <= folds:
        return lanes
    return channels


@dataclass(frozen=True)
class Stage:
    """One compute stage of the pipeline as the cost model sees it."""
    name: str
    kind: str            # "conv" (matrix-vector unit) or "pool"
    in_ch: int
    in_hw: tuple         # (H, W) of the stage's input
    out_hw: tuple        # (H, W) of the stage's output
    kernel: int = 1
    stride: int = 1
    padding: int = 0
    out_ch: int = 0      # conv only
    w_bits: int = 8      # conv only

    @property
    def windowed(self) -> bool:
        """Fed by a sliding-window unit (KxK conv or pool): its SIMD must divide the channels."""
        return self.kernel > 1 or self.stride > 1 or self.kind == "pool"

    @property
    def vector(self) -> int:
        """Inputs per output pixel of a conv (the MVU's N)."""
        return self.kernel * self.kernel * self.in_ch

    @property
    def out_pixels(self) -> int:
        return self.out_hw[0] * self.out_hw[1]

    @property
    def macs(self) -> int:
        return self.out_pixels * self.vector * self.out_ch if self.kind == "conv" else 0

    def simd_choices(self) -> list[int]:
        """A conv's SIMD divides its vector (K*K*C, see window_lanes); a pool's lanes its channels."""
        return divisors(self.in_ch) if self.kind == "pool" else divisors(self.vector)

    def pe_choices(self) -> list[int]:
        return divisors(self.out_ch) if self.kind == "conv" else [1]

    def cycles(self, simd: int, pe: int = 1) -> int:
        """Cycles per frame at one beat per cycle (the blocks' steady-state throughput)."""
        if self.kind == "pool":
            return self.in_hw[0] * self.in_hw[1] * (self.in_ch // simd)  # one input beat per cycle
        mvu = self.out_pixels * (self.vector // simd) * (self.out_ch // pe)
        if not self.windowed:
            return mvu
        # a sliding window takes every input beat (matters for stride 2) and emits K*K beats per
        # output pixel at its own lane count, one beat per cycle
        lanes = window_lanes(self.in_ch, simd, self.out_ch // pe)
        in_beats = self.in_hw[0] * self.in_hw[1] * (self.in_ch // lanes)
        window_beats = self.out_pixels * self.kernel * self.kernel * (self.in_ch // lanes)
        return max(mvu, in_beats, window_beats)

    def multipliers(self, simd: int, pe: int = 1) -> int:
        return simd * pe if self.kind == "conv" else 0

    def weight_bits(self) -> int:
        return self.vector * self.out_ch * self.w_bits if self.kind == "conv" else 0


def stages(model: IntModel) -> list[Stage]:
    """The pipeline's compute stages in stream order."""
    out = []
    c, h, w = model.in_ch, model.height, model.width

    def conv_stage(q: QConv, c, h, w) -> Stage:
        ho, wo = conv_out_size(h, q.kernel, q.stride, q.padding), conv_out_size(w, q.kernel, q.stride, q.padding)
        return Stage(q.name, "conv", c, (h, w), (ho, wo), q.kernel, q.stride, q.padding, q.out_ch, q.w_bits)

    for layer in model.layers:
        if isinstance(layer, QConv):
            s = conv_stage(layer, c, h, w)
            out.append(s)
            c, (h, w) = s.out_ch, s.out_hw
        elif isinstance(layer, QMaxPool):
            ho, wo = pool_out_size(h, layer.kernel, layer.stride), pool_out_size(w, layer.kernel, layer.stride)
            out.append(Stage(layer.name, "pool", c, (h, w), (ho, wo), layer.kernel, layer.stride))
            h, w = ho, wo
        elif isinstance(layer, QFire):
            sq = conv_stage(layer.squeeze, c, h, w)
            out += [sq, conv_stage(layer.expand1x1, sq.out_ch, h, w), conv_stage(layer.expand3x3, sq.out_ch, h, w)]
            if layer.bypass is not None and layer.bypass.conv is not None:
                out.append(conv_stage(layer.bypass.conv, c, h, w))
            c = layer.out_ch
        elif isinstance(layer, QHead):
            out.append(conv_stage(layer.conv, c, h, w))
    return out



def with_utilisation(rows: list[dict]) -> list[dict]:
    """Per-layer table rows (``cycles``, ``multipliers``, ``macs``) with each layer's multiplier
    utilisation at the pipeline's pace (its slowest layer) added."""
    bottleneck = max(r["cycles"] for r in rows)
    for r in rows:
        r["utilisation"] = (r["macs"] / (r["multipliers"] * bottleneck)) if r["multipliers"] else None
    return rows


def summarise(rows: list[dict]) -> dict:
    """Totals of a per-layer table: cycles per frame (the slowest layer), multipliers, MACs, MAC
    efficiency, bottleneck, weight bits."""
    cycles = max(r["cycles"] for r in rows)
    mults = sum(r["multipliers"] for r in rows)
    macs = sum(r["macs"] for r in rows)
    return {"expected_cycles_per_frame": cycles, "multipliers": mults, "macs_per_frame": macs,
            "expected_mac_efficiency": macs / (mults * cycles),
            "bottleneck": max(rows, key=lambda r: r["cycles"])["layer"],
            "weight_bits": sum(r["weight_bits"] for r in rows)}

@dataclass(frozen=True)
class LayerFold:
    simd: int
    pe: int = 1


@dataclass(frozen=True)
class Folding:
    layers: dict              # stage name -> LayerFold

    def __getitem__(self, name: str) -> LayerFold:
        return self.layers[name]

    # --- checking ------------------------------------------------------------------------------
    def validate(self, model: IntModel) -> None:
        """Raise FoldingFileError naming the first problem and how to fix it."""
        st = {s.name: s for s in stages(model)}
        unknown = sorted(set(self.layers) - set(st))
        missing = sorted(set(st) - set(self.layers))
        if unknown:
            raise FoldingFileError(f"folding names layers that {model.name} does not have: {unknown[:5]}; "
                                   f"its layers are {list(st)[:8]}...")
        if missing:
            raise FoldingFileError(f"folding has no entry for {missing[:5]} (every conv needs simd/pe and "
                                   "every max-pool needs lanes); start from `squeezehw fold`'s output")
        for name, f in self.layers.items():
            s = st[name]
            what = "channels" if s.kind == "pool" else "inputs per output pixel (K*K*C)"
            limit = s.in_ch if s.kind == "pool" else s.vector
            if f.simd < 1 or limit % f.simd:
                raise FoldingFileError(
                    f"{name}: simd={f.simd} does not divide its {limit} {what}; "
                    f"valid choices: {s.simd_choices()}")
            if s.kind == "conv" and (f.pe < 1 or s.out_ch % f.pe):
                raise FoldingFileError(f"{name}: pe={f.pe} does not divide its {s.out_ch} output channels; "
                                       f"valid choices: {s.pe_choices()}")
            if s.kind == "pool" and f.pe != 1:
                raise FoldingFileError(f"{name}: a max-pool takes only `lanes` (pe must be 1)")

    # --- summaries -----------------------------------------------------------------------------
    def table(self, model: IntModel) -> list[dict]:
        rows = []
        for s in stages(model):
            f = self.layers[s.name]
            cyc = s.cycles(f.simd, f.pe)
            rows.append({"layer": s.name, "kind": s.kind, "simd": f.simd, "pe": f.pe, "cycles": cyc,
                         "multipliers": s.multipliers(f.simd, f.pe), "macs": s.macs,
                         "weight_bits": s.weight_bits()})
        return with_utilisation(rows)

    def summary(self, model: IntModel) -> dict:
        return summarise(self.table(model))

    # --- files ---------------------------------------------------------------------------------
    def to_json(self, model_name: str = "") -> str:
        return json.dumps({"format": FORMAT, "version": VERSION, "model": model_name,
                           "layers": {k: asdict(v) for k, v in self.layers.items()}}, indent=1)

    def save(self, path, model_name: str = "") -> Path:
        path = Path(path)
        from ..outputs import atomic_write  # no .tmp left on failure; umask permissions
        with atomic_write(path, "w") as f:
            f.write(self.to_json(model_name) + "\n")
        return path

    @classmethod
    def load(cls, path, model_name: str | None = None) -> "Folding":
        """Read a folding file; every entry must be ``{"simd": N, "pe": M}`` with integers (not
        booleans or strings).  With ``model_name``, a file made for another model is refused."""
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except FileNotFoundError:
            raise FoldingFileError(f"{path}: no such folding file") from None
        except IsADirectoryError:
            raise FoldingFileError(f"{path}: is a folder, not a folding file") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise FoldingFileError(f"{path}: not valid JSON ({e})") from None
        except OSError as e:
            raise FoldingFileError(f"{path}: cannot read it ({e.strerror or e})") from None
        if not isinstance(d, dict) or d.get("format") != FORMAT or d.get("version") != VERSION:
            raise FoldingFileError(f"{path}: not a {FORMAT} v{VERSION} file")
        unknown = sorted(set(d) - {"format", "version", "model", "layers"})
        if unknown:
            raise FoldingFileError(f"{path}: unknown keys {unknown}; a folding file holds format, version, "
                                   "model and layers")
        made_for = d.get("model") or ""
        if model_name and made_for and made_for != model_name:
            raise FoldingFileError(f"{path} was made for model {made_for!r}, not {model_name!r}; make one "
                                   f"for this model with `squeezehw fold MODEL -o FILE`")
        return cls.from_dict(d, str(path))

    @classmethod
    def from_dict(cls, d: dict, where: str = "folding") -> "Folding":
        """From ``{"layers": {name: {"simd": N, "pe": M}}}`` (a folding file's contents)."""
        if not isinstance(d, dict) or not isinstance(d.get("layers"), dict):
            raise FoldingFileError(f"{where}: \"layers\" must be an object {{layer: {{\"simd\": N, \"pe\": M}}}}")
        layers = {}
        for k, v in d["layers"].items():
            if not isinstance(v, dict) or "simd" not in v or set(v) - {"simd", "pe"}:
                raise FoldingFileError(f"{where}: layer {k}: {json.dumps(v)} is not {{\"simd\": N, \"pe\": M}}")
            for key, val in v.items():
                if isinstance(val, bool) or not isinstance(val, int):
                    raise FoldingFileError(f"{where}: layer {k}: {key} is {json.dumps(val)}; it must be a "
                                           "positive whole number")
            layers[k] = LayerFold(v["simd"], v.get("pe", 1))
        return cls(layers)


def fold_for_cycles(model: IntModel, target_cycles: int) -> Folding:
    """For each stage the (simd, pe) with the fewest multipliers whose cycles <= target.

    Ties go to the larger simd (fewer, wider output beats).  Stages that cannot reach the
    target get their fastest choice (the caller sees the result in the summary).
    """
    layers = {}
    for s in stages(model):
        best = None
        for simd in s.simd_choices():
            for pe in s.pe_choices():
                cyc = s.cycles(simd, pe)
                key = (cyc > target_cycles, s.multipliers(simd, pe) if s.kind == "conv" else simd,
                       cyc if cyc > target_cycles else 0, -simd)
                if best is None or key < best[0]:
                    best = (key, LayerFold(simd, pe))
        layers[s.name] = best[1]
    return Folding(layers)


def min_cycles(model: IntModel) -> int:
    """The fastest any folding can go: every stage at full parallelism."""
    return max(s.cycles(max(s.simd_choices()), max(s.pe_choices())) for s in stages(model))


DEFAULT_SPEED_SLACK = 0.02


def auto_fold(model: IntModel, *, max_multipliers: int | None = None,
              target_cycles: int | None = None, speed_slack: float = DEFAULT_SPEED_SLACK,
              count=None, what: str = "multipliers") -> Folding:
    """Balance the pipeline: the smallest frame time within the multiplier budget, or the fewest
    multipliers that reach ``target_cycles``.  Raises UserError with the best figure when infeasible.

    ``count(folding) -> int`` is what the budget counts (default: MAC multipliers, ``pe * simd``
    per conv); a DSP budget passes the build plan's count of every multiplier the design
    instantiates (squeezehw.pipeline: ``--max-dsp``, ``--board``), named ``what`` in errors.

    With a budget, ``speed_slack`` (a fraction, default 2 %) lets the folder give up that much frame
    rate for a folding with a higher MAC efficiency: among the foldings within the budget whose frame
    time is at most ``(1 + speed_slack)`` times the fastest, it takes the one with the fewest
    multiplier-cycles per frame (ties: the faster).  Divisor steps make the multiplier count jump
    unevenly with the pace, so a slightly slower pace can need far fewer multipliers (SqueezeNet
    v1.1 at 224: 1,876 instead of 1,966 for 1.8 % more cycles).  0 gives the fastest folding."""
    if (max_multipliers is None) == (target_cycles is None):
        raise UserError("auto folding needs exactly one target: a multiplier budget or a cycle target")
    if not 0 <= speed_slack < 1:
        raise UserError(f"speed slack {speed_slack!r} must be a fraction in [0, 1)")
    if target_cycles is not None:
        best = min_cycles(model)
        if target_cycles < best:
            raise UserError(f"{model.name} cannot reach {target_cycles} cycles per frame: the fastest "
                            f"folding needs {best} cycles (every layer fully parallel)")
        return fold_for_cycles(model, target_cycles)
    if count is None:
        def count(f):
            return f.summary(model)["multipliers"]
    st = stages(model)
    lo, hi = min_cycles(model), max(s.cycles(1, 1) for s in st)
    need = count(fold_for_cycles(model, hi))
    if need > max_multipliers:
        raise UserError(f"{model.name} needs at least {need} {what} (one MAC per conv); "
                        f"the budget is {max_multipliers}")
    # the count falls as the cycle target rises: binary search the smallest target (every target
    # ``hi`` takes is within the budget, so the result is even where the count is not monotonic)
    while lo < hi:
        mid = (lo + hi) // 2
        if count(fold_for_cycles(model, mid)) <= max_multipliers:
            hi = mid
        else:
            lo = mid + 1
    fastest = fold_for_cycles(model, hi)
    limit = int(fastest.summary(model)["expected_cycles_per_frame"] * (1 + speed_slack))
    # every pace at which some stage changes its choice, up to the limit
    paces = sorted({c for s in st for a in s.simd_choices() for b in s.pe_choices()
                    if lo < (c := s.cycles(a, b)) <= limit})

    def cost(f):
        sm = f.summary(model)
        return (sm["multipliers"] * sm["expected_cycles_per_frame"], sm["expected_cycles_per_frame"])

    candidates = [fold_for_cycles(model, t) for t in paces]
    return min([fastest] + [f for f in candidates if count(f) <= max_multipliers], key=cost)


def default_folding(model: IntModel) -> Folding:
    """A valid folding for any model: balanced for a modest array (1/64 of the MACs per cycle of a
    fully serial design, at least 16 multipliers), which keeps simulation of small models fast."""
    total = sum(s.macs for s in stages(model))
    budget = max(16, min(256, total // 16384))
    try:
        return auto_fold(model, max_multipliers=budget)
    except UserError:
        return fold_for_cycles(model, max(s.cycles(1, 1) for s in stages(model)))

