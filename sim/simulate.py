"""Whole-design simulation in Verilator, checked bit for bit against the golden model.

``simulate_frames`` builds (cached) the accelerator inside the simulation harness, plays images
through it back to back, decodes the output stream (per frame: every logit, then the class) and
compares it with ``golden.run``: every logit must be equal and the class equal.  It reports cycles
per frame in steady state (mean spacing of consecutive frames' last output beats, leaving out the
first spacing when there are three frames or more), latency (first input
beat of frame 0 to its last output beat), MAC efficiency = MACs per frame / (multipliers x cycles
per frame) and simulation speed.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from ..plan.folding import Folding, stages
from ..quant import golden
from ..quant.intmodel import IntModel
from ..toolchain.verilator import SimTraffic
from .streamsim import unpack_lanes

__all__ = ["image_beats", "simulate_frames", "SimReport"]


def image_beats(images: np.ndarray, lanes: int) -> list[int]:
    """Raster order, each pixel's channels in beats of ``lanes`` bytes, lane 0 in the LSBs."""
    n, c, h, w = images.shape
    px = images.transpose(0, 2, 3, 1).reshape(-1, c // lanes, lanes)   # (N*H*W, beats, lanes)
    weights = (1 << (8 * np.arange(lanes, dtype=object)))
    return [int(v) for v in (px.astype(object) * weights).sum(axis=2).reshape(-1)]


@dataclass
class SimReport:
    frames: int
    bit_exact: bool
    cycles_per_frame: float | None
    latency_cycles: int | None
    multipliers: int
    macs_per_frame: int
    mac_efficiency: float | None
    expected_cycles_per_frame: int
    total_cycles: int
    sim_cycles_per_second: float           # simulated cycles per wall-clock second of the run
    build_seconds: float
    build_cached: bool
    sim_seconds: float                     # the whole simulator run (start-up, stimulus, read-back)
    traffic: dict
    mismatches: list = field(default_factory=list)
    frame_intervals: list = field(default_factory=list)   # cycles between consecutive frames' ends
    streams: dict = field(default_factory=dict)   # with probes: {stream: {"transfers", "blocked"}}
    classes: list = field(default_factory=list)
    golden_classes: list = field(default_factory=list)
    sim_cycles_per_cpu_second: float = 0.0  # per CPU second of the simulator (robust to machine load)
    stimulus_load_seconds: float = 0.0
    build_cpu_seconds: float = 0.0
    build_style: str = ""
    waves: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def _harness_capacity(frames: int) -> int:
    """Round the harness size up so that runs with similar frame counts share one cached build."""
    cap = 8
    while cap < frames:
        cap *= 2
    return cap


def make_harness(model: IntModel, folding: Folding, frames: int, *, stop_after: str | None = None,
                 probes: bool = False, style=None, target=None, weight_codes: dict | None = None):
    """(harness, top-module name, build metadata) for simulating up to ``frames`` frames in
    Verilator build style ``style`` (default: the fast one).  ``target``: a squeezehw.plan.lowering.Target
    (multiplier primitive, requantiser; default generic, parallel); ``weight_codes``: {conv name:
    PackedWeights}, compressed weights for those convs' MVUs (squeezehw.quant.sparse_weights.encode_model)."""
    from ..plan.lowering import lower
    from ..toolchain.build import module_name
    from ..toolchain.verilator import default_style
    from .harness import SimHarness
    accel = lower(model, folding, target, weight_codes=weight_codes).accelerator(stop_after=stop_after,
                                                                                probes=probes)
    cap = _harness_capacity(frames)
    in_bpf = model.height * model.width * model.in_ch // accel.in_lanes
    out_bpf = accel.out_beats_per_frame
    harness = SimHarness(accel, in_depth=cap * in_bpf, out_depth=cap * out_bpf, frames_max=cap,
                         in_beats_per_frame=in_bpf, out_beats_per_frame=out_bpf,
                         watchdog=max(1 << 16, 4 * folding.summary(model)["expected_cycles_per_frame"]),
                         stimulus_from_file=(style or default_style()).preload,
                         registered_reset=(style or default_style()).registered_reset)
    meta = {"in_lanes": accel.in_lanes, "out_lanes": accel.out_lanes,
            "probe_names": accel.probe_names if probes else None}
    return harness, f"tb_{module_name(model)}", meta


def build_for(model: IntModel, folding: Folding, frames: int, *, waves: bool = False, progress: bool = True,
              stop_after: str | None = None, probes: bool = False, style=None, target=None,
              weight_codes: dict | None = None):
    from ..toolchain import verilator
    harness, name, meta = make_harness(model, folding, frames, stop_after=stop_after, probes=probes, style=style,
                                       target=target, weight_codes=weight_codes)
    return verilator.build(harness, name=name, waves=waves, progress=progress, style=style, extra_meta=meta)


def decode(outputs: list[int], classes: int, frames: int) -> tuple[np.ndarray, np.ndarray]:
    per = classes + 1
    arr = np.array(outputs[:frames * per], dtype=object).reshape(frames, per)
    return arr[:, :classes].astype(np.int64), arr[:, classes].astype(np.int64)


def simulate_frames(model: IntModel, folding: Folding, images: np.ndarray, *,
                    traffic: SimTraffic = SimTraffic(), reset_after: int | None = None,
                    waves=None, progress: bool = True, diagnose: bool = False,
                    golden_model: IntModel | None = None, probes: bool = False, style=None,
                    build=None, target=None, weight_codes: dict | None = None) -> SimReport:
    """``diagnose``: on a mismatch, also bisect over layers (locate_mismatch) on the first bad frame.
    ``golden_model``: compare against another model than the one built (fault-injection tests).
    ``waves``: path of a VCD waveform to write (from a separate, traced build).
    ``style``: a ``squeezehw.toolchain.verilator.Style`` (default: the fast one).  ``build``: a finished
    ``squeezehw.toolchain.verilator.Build`` of this design to use instead of building one.
    ``weight_codes``: {conv name: PackedWeights}, compressed weights for those convs' MVUs
    (squeezehw.quant.sparse_weights.encode_model)."""
    from ..toolchain import verilator
    images = np.asarray(images, dtype=np.uint8)
    n = images.shape[0]
    b = build or build_for(model, folding, n, waves=bool(waves), progress=progress, probes=probes, style=style,
                           target=target, weight_codes=weight_codes)
    beats = image_beats(images, b.meta["in_lanes"])
    res = verilator.run(b, beats, n_out=n * (model.classes + 1), traffic=traffic,
                        reset_after=reset_after, waves=waves or None)
    want = golden.run(golden_model or model, images)
    got_logits, got_cls = decode(res["outputs"], model.classes, n) if not res["stuck"] else (None, None)
    mismatches = []
    if res["stuck"]:
        mismatches.append(f"design hung: {len(res['outputs'])} of {n * (model.classes + 1)} output beats "
                          f"after {res['cycles']} cycles ({res['in_count']} of {len(beats)} input beats taken)")
    else:
        for f in range(n):
            diff = np.nonzero(got_logits[f] != want.logits[f])[0]
            if diff.size:
                k = int(diff[0])
                mismatches.append(f"frame {f}: logit of class {k} is {int(got_logits[f, k])}, golden "
                                  f"{int(want.logits[f, k])} ({diff.size} logits differ)")
            if got_cls[f] != want.classes[f]:
                mismatches.append(f"frame {f}: class {int(got_cls[f])}, golden {int(want.classes[f])}")
    mismatches += stream_errors(res)
    if mismatches and diagnose:
        bad = int(mismatches[0].split()[1].rstrip(":")) if mismatches[0].startswith("frame") else 0
        where = locate_mismatch(model, folding, images[bad:bad + 1], progress=progress,
                                golden_model=golden_model)
        mismatches.insert(0, f"first differing layer (frame {bad} alone): {where}")
    st = stages(model)
    fsum = folding.summary(model)
    macs = sum(s.macs for s in st)
    mults = fsum["multipliers"]
    outs = res["out_stamps"][:n]
    # steady state: the mean interval between consecutive frames' ends, leaving out the first
    # interval when there are more (it still includes the deep pipeline filling up)
    intervals = [b - a for a, b in zip(outs, outs[1:])] if not res["stuck"] else []
    steady = intervals[1:] or intervals
    cpf = sum(steady) / len(steady) if steady else None
    lat = outs[0] - res["in_stamps"][0] if outs and not res["stuck"] else None
    return SimReport(
        frames=n, bit_exact=not mismatches, cycles_per_frame=cpf, latency_cycles=lat,
        multipliers=mults, macs_per_frame=macs,
        mac_efficiency=(macs / (mults * cpf)) if cpf else None,
        expected_cycles_per_frame=fsum["expected_cycles_per_frame"], total_cycles=res["cycles"],
        sim_cycles_per_second=res["cycles"] / max(res["run_seconds"], 1e-9),
        build_seconds=b.seconds, build_cached=b.cached, sim_seconds=res["wall_seconds"],
        traffic=asdict(traffic), mismatches=mismatches, frame_intervals=intervals,
        streams={name: {"transfers": res["probes"][2 * k], "blocked": res["probes"][2 * k + 1]}
                 for k, name in enumerate(b.meta.get("probe_names") or [])},
        classes=[] if got_cls is None else [int(c) for c in got_cls],
        golden_classes=[int(c) for c in want.classes],
        sim_cycles_per_cpu_second=res["cycles"] / max(res["run_cpu_seconds"], 1e-9),
        stimulus_load_seconds=res["load_seconds"], build_cpu_seconds=b.cpu_seconds,
        build_style=b.meta.get("style", ""), waves=res.get("waves"))


def stream_errors(res: dict) -> list[str]:
    """A design must emit exactly the expected beats and take all of its input."""
    errors = []
    if res["extra_outputs"]:
        errors.append(f"{res['extra_outputs']} output beat(s) after the last expected one")
    if res["unconsumed_inputs"] and not res["stuck"]:
        errors.append(f"{res['unconsumed_inputs']} input beat(s) never taken by the design")
    return errors



def locate_mismatch(model: IntModel, folding: Folding, images: np.ndarray, *,
                    traffic: SimTraffic = SimTraffic(), progress: bool = True,
                    golden_model: IntModel | None = None) -> str | None:
    """Find the first top-level layer whose hardware output differs from the golden model.

    Builds the design truncated after a layer (its feature map becomes the output stream) and
    bisects over the layers: about log2(layers) Verilator builds.  Returns a message naming the
    layer, frame, pixel and channel of the first difference, or None if every layer agrees.
    """
    from ..toolchain import verilator
    images = np.asarray(images, dtype=np.uint8)
    n = images.shape[0]
    ref = golden_model or model     # (tests inject faults by building hardware from another model)
    trace = golden.run(ref, images, trace=True).layers
    names = [layer.name for layer in model.layers]

    def check(k: int) -> str | None:
        name = names[k]
        b = build_for(model, folding, n, stop_after=name, progress=progress)
        res = verilator.run(b, image_beats(images, b.meta["in_lanes"]),
                            n_out=n * b.meta["out_beats_per_frame"], traffic=traffic)
        if k == len(names) - 1:           # the head: logits then class
            lg, cl = decode(res["outputs"], model.classes, n) if not res["stuck"] else (None, None)
            want = golden.run(ref, images)
            if lg is None:
                return f"{name}: the design hung"
            for f in range(n):
                bad = np.nonzero(lg[f] != want.logits[f])[0]
                if bad.size:
                    return f"{name}: frame {f}, logit of class {bad[0]}: {lg[f, bad[0]]} != golden {want.logits[f, bad[0]]}"
            return None
        if res["stuck"]:
            return f"{name}: the design hung after {len(res['outputs'])} output beats"
        if stream_errors(res):
            return f"{name}: " + "; ".join(stream_errors(res))
        want = trace[name]
        _, c, h, w = want.shape
        lanes = b.meta["out_lanes"]
        got = np.array([unpack_lanes(v, lanes) for v in res["outputs"]],
                       dtype=np.int64).reshape(n, h, w, c).transpose(0, 3, 1, 2)
        bad = np.argwhere(got != want.astype(np.int64))
        if bad.size:
            f, ch, y, x = bad[0]
            return (f"{name}: frame {f}, pixel (y={y}, x={x}), channel {ch}: hardware {got[f, ch, y, x]}, "
                    f"golden {want[f, ch, y, x]} ({len(bad)} values differ)")
        return None

    lo, hi, found = 0, len(names) - 1, None
    last = check(hi)
    if last is None:
        return None
    found = last
    while lo < hi:                      # invariant: layer hi differs
        mid = (lo + hi) // 2
        msg = check(mid)
        if msg is None:
            lo = mid + 1
        else:
            hi, found = mid, msg
    return found
