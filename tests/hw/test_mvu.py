"""MVU against the golden model: exact integer equality, every folding, rough traffic, throughput."""
from __future__ import annotations

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.sim import Simulator
from squeezehw.sim.streamsim import Traffic, pack_lanes, simulate, unpack_lanes

from squeezehw.errors import UserError
from squeezehw.hw.errors import FoldingError
from squeezehw.hw.mvu import MVU
from squeezehw.quant import golden
from squeezehw.quant.intmodel import QConv

# property tests build MVUs without simulating them
pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

# both builds: with the timing registers (the default) and without (iCE40: Target.timing_registers)
TR = pytest.mark.parametrize("tr", [True, False], ids=["treg", "comb"])


def make_qconv(rng, in_ch, out_ch, k=1, padding=0, relu=True, in_signed=False, wmax=127,
               bias_range=2000, name="conv", weight=None, bias=None):
    w = rng.integers(-wmax, wmax + 1, (out_ch, in_ch, k, k)) if weight is None else weight
    b = rng.integers(-bias_range, bias_range + 1, out_ch) if bias is None else bias
    # choose mult/shift so the outputs spread over the 8-bit range instead of all saturating
    in_max = 128 if in_signed else 255
    spread = max(1, int(np.abs(w.reshape(out_ch, -1)).sum(1).max()) * in_max // 4 + int(np.abs(b).max()))
    shift = np.array([max(1, min(48, 16 - 7 + int(spread).bit_length() + int(d)))
                      for d in rng.integers(-1, 2, out_ch)])
    mult = rng.integers(1 << 15, 1 << 16, out_ch)
    return QConv(name=name, in_ch=in_ch, out_ch=out_ch, kernel=k, stride=1, padding=padding,
                 relu=relu, weight=np.asarray(w, np.int64), bias=np.asarray(b, np.int64),
                 mult=mult.astype(np.int64), shift=shift.astype(np.int64), in_signed=in_signed)


def im2col(x, k, padding):
    """(C, H, W) -> (pixels, k*k*C) in raster order, each row in (ky, kx, c) order."""
    c, h, w = x.shape
    xp = np.pad(x.astype(np.int64), ((0, 0), (padding, padding), (padding, padding)))
    ho, wo = h + 2 * padding - k + 1, w + 2 * padding - k + 1
    rows = []
    for y in range(ho):
        for xx in range(wo):
            rows.append(xp[:, y:y + k, xx:xx + k].transpose(1, 2, 0).reshape(-1))
    return np.array(rows)


def run_mvu(dut: MVU, vectors, traffic=Traffic.smooth()):
    beats = [pack_lanes(v[j * dut.simd:(j + 1) * dut.simd]) for v in vectors
             for j in range(dut.N // dut.simd)]
    n_out = len(vectors) * dut.O // dut.pe
    r = simulate(dut, {"i": beats}, {"o": n_out}, traffic=traffic, extra_cycles=20)
    got = [v for word in r["o"] for v in unpack_lanes(word, dut.pe, signed=not dut.relu)]
    return np.array(got, dtype=np.int64).reshape(len(vectors), dut.O)


def check(got, exp, what=""):
    exp = np.asarray(exp, dtype=np.int64)
    if not np.array_equal(got, exp):
        bad = np.argwhere(got != exp)
        pix, ch = bad[0]
        raise AssertionError(f"{what}: {len(bad)} mismatches; first at pixel {pix} channel {ch}: "
                             f"got {got[pix, ch]}, expected {exp[pix, ch]}")


def golden_1x1(q: QConv, vectors):
    x = np.asarray(vectors).T.reshape(1, q.in_ch, 1, len(vectors))
    y = golden.conv(x.astype(np.int8 if q.in_signed else np.uint8), q)
    return y[0, :, 0, :].T.astype(np.int64)


def rand_inputs(rng, n, length, signed=False):
    return rng.integers(-128, 128, (n, length)) if signed else rng.integers(0, 256, (n, length))


# ---- correctness over foldings -------------------------------------------------------------

@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("pe_sel", ["1", "2", "O"])
@pytest.mark.parametrize("simd_sel", ["1", "N/2", "N"])
def test_1x1_foldings(simd_sel, pe_sel, relu):
    rng = np.random.default_rng(hash((simd_sel, pe_sel, relu)) % 2**32)
    N, O = 8, 6
    q = make_qconv(rng, N, O, relu=relu)
    simd = {"1": 1, "N/2": N // 2, "N": N}[simd_sel]
    pe = {"1": 1, "2": 2, "O": O}[pe_sel]
    dut = MVU.from_qconv(q, simd=simd, pe=pe)
    x = rand_inputs(rng, 4, N)
    check(run_mvu(dut, x, Traffic.rough(seed=simd * 10 + pe)), golden_1x1(q, x),
          f"1x1 simd={simd} pe={pe} relu={relu}")


@pytest.mark.parametrize("simd,pe", [(1, 1), (9, 2), (18, 4), (6, 1), (2, 4)])
def test_3x3_im2col(simd, pe):
    rng = np.random.default_rng(simd * 7 + pe)
    C, O, H = 2, 4, 3
    q = make_qconv(rng, C, O, k=3, padding=1, relu=True)
    img = rng.integers(0, 256, (C, H, H))
    exp = golden.conv(img[None].astype(np.uint8), q)[0].reshape(O, -1).T
    dut = MVU.from_qconv(q, simd=simd, pe=pe)
    check(run_mvu(dut, im2col(img, 3, 1), Traffic.rough(seed=pe)), exp, f"3x3 simd={simd} pe={pe}")


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_signed_inputs_rough(seed):
    rng = np.random.default_rng(100 + seed)
    q = make_qconv(rng, 6, 4, relu=False, in_signed=True)
    dut = MVU.from_qconv(q, simd=3, pe=2)
    x = rand_inputs(rng, 5, 6, signed=True)
    check(run_mvu(dut, x, Traffic.rough(seed)), golden_1x1(q, x), f"signed seed={seed}")


@pytest.mark.parametrize("case", ["max", "min", "zero", "bigbias", "mixed_extreme"])
def test_extreme_values(case):
    rng = np.random.default_rng(7)
    N, O = 4, 4
    w = {"max": np.full((O, N, 1, 1), 127), "min": np.full((O, N, 1, 1), -127),
         "zero": np.zeros((O, N, 1, 1), int),
         "bigbias": rng.integers(-127, 128, (O, N, 1, 1)),
         "mixed_extreme": rng.choice([-128, 127], (O, N, 1, 1))}[case]
    b = (np.array([2**31 - 1, -2**31, 123456789, -987654321]) if case == "bigbias"
         else np.array([0, 1, -1, 5000]))
    for relu in (True, False):
        q = make_qconv(rng, N, O, relu=relu, weight=w, bias=b)
        x = np.array([[255] * N, [0] * N, [255, 0, 255, 0], [1, 2, 3, 4]])
        for simd, pe in ((1, 1), (N, O), (2, 2)):
            dut = MVU.from_qconv(q, simd=simd, pe=pe)
            check(run_mvu(dut, x, Traffic.rough(seed=simd + pe)), golden_1x1(q, x),
                  f"{case} relu={relu} simd={simd} pe={pe}")


def test_extreme_signed_inputs():
    rng = np.random.default_rng(8)
    w = rng.choice([-128, 127], (4, 4, 1, 1))
    q = make_qconv(rng, 4, 4, relu=False, in_signed=True, weight=w, bias=np.array([0, -7, 7, 2**20]))
    x = np.array([[-128] * 4, [127] * 4, [-128, 127, -128, 127], [0, 0, 0, 0]])
    dut = MVU.from_qconv(q, simd=2, pe=2)
    check(run_mvu(dut, x, Traffic.rough(2)), golden_1x1(q, x), "signed extremes")


def test_rounding_half_up_negative():
    # acc * mult exactly at .5 steps: -2.5 -> -2, 2.5 -> 3 (round half up)
    w = np.array([[1], [1]])
    dut = MVU(weights=w, bias=[0, 0], mult=[1, 1], shift=[1, 1], simd=1, pe=1, relu=False,
              in_signed=True)
    x = np.array([[-5], [5], [-3], [3], [-1], [1]])
    exp = golden.requantize(x @ w.T, [1, 1], [1, 1], -128, 127)
    check(run_mvu(dut, x, Traffic.rough(5)), exp, "rounding")


def test_wider_than_int8_weights_and_large_shift():
    rng = np.random.default_rng(9)
    w = rng.integers(-2000, 2000, (2, 4))
    b = rng.integers(-2**30, 2**30, 2)
    dut = MVU(weights=w, bias=b, mult=[65535, 40000], shift=[48, 20], simd=2, pe=1, relu=False)
    x = rand_inputs(rng, 3, 4)
    exp = golden.requantize(x @ w.T + b, [65535, 40000], [48, 20], -128, 127)
    check(run_mvu(dut, x, Traffic.rough(6)), exp, "wide")


# ---- throughput and latency ----------------------------------------------------------------

def timed_run(dut: MVU, vectors, consumer_ready=lambda cycle: True, period=1, blocked=None):
    """Input beat j offered from cycle j*period on (smooth for period 1) and held until taken;
    returns (cycles of accepted input beats, cycles of output beats, outputs).  ``blocked``, a
    list, receives the cycles in which an offered beat was refused (valid & ~ready)."""
    beats = [pack_lanes(v[j * dut.simd:(j + 1) * dut.simd]) for v in vectors
             for j in range(dut.N // dut.simd)]
    n_out = len(vectors) * dut.O // dut.pe
    in_cycles, out_cycles, outs = [], [], []

    async def producer(ctx):
        cycle = 0
        for j, beat in enumerate(beats):
            while cycle < j * period:
                ctx.set(dut.i.valid, 0)
                await ctx.tick()
                cycle += 1
            ctx.set(dut.i.payload, beat)
            ctx.set(dut.i.valid, 1)
            while True:
                _, _, ready = await ctx.tick().sample(dut.i.ready)
                cycle += 1
                if ready:
                    in_cycles.append(cycle - 1)
                    break
                if blocked is not None:
                    blocked.append(cycle - 1)
        ctx.set(dut.i.valid, 0)

    async def consumer(ctx):
        cycle = 0
        while len(outs) < n_out:
            rdy = consumer_ready(cycle)
            ctx.set(dut.o.ready, rdy)
            _, _, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            if valid and rdy:
                out_cycles.append(cycle)
                outs.append(payload)
            cycle += 1
            assert cycle < 100000

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer, background=True)
    sim.add_testbench(consumer)
    sim.run()
    got = [v for word in outs for v in unpack_lanes(word, dut.pe, signed=not dut.relu)]
    return in_cycles, out_cycles, np.array(got, dtype=np.int64).reshape(len(vectors), dut.O)


@pytest.mark.parametrize("N,O,simd,pe", [(8, 6, 2, 2), (8, 6, 8, 6), (8, 6, 8, 2), (8, 6, 1, 6),
                                         (4, 4, 4, 4), (4, 8, 4, 1), (6, 4, 1, 1)])
@TR
def test_throughput_exact(N, O, simd, pe, tr):
    rng = np.random.default_rng(N * 100 + O * 10 + simd + pe)
    q = make_qconv(rng, N, O)
    dut = MVU.from_qconv(q, simd=simd, pe=pe, timing_registers=tr)
    x = rand_inputs(rng, 6, N)
    in_c, out_c, got = timed_run(dut, x)
    check(got, golden_1x1(q, x), "throughput run")
    SF, NF = N // simd, O // pe
    assert dut.cycles_per_vector == SF * NF
    per = NF
    firsts = out_c[::per]
    gaps = np.diff(firsts)
    assert list(gaps) == [SF * NF] * (len(x) - 1), f"cycles between vectors {gaps}, want {SF * NF}"
    # within a vector, one output beat every SF cycles: the whole array is busy every cycle
    assert all(b - a == SF for v in range(len(x)) for a, b in zip(out_c[v * per:(v + 1) * per],
                                                               out_c[v * per + 1:(v + 1) * per]))
    # input: the ping-pong buffer takes vectors 0 and 1 back to back (one beat per cycle); vector
    # v >= 2 enters the cycle after vector v-2's last step was issued, so one vector per SF*NF
    starts = in_c[::SF]
    assert all(b - a == 1 for a, b in zip(in_c[:2 * SF], in_c[1:2 * SF]))
    want = [v * SF if NF == 1 or v < 2 else (v - 1) * SF * NF for v in range(len(x))]
    assert [s - starts[0] for s in starts] == want
    # latency: last step of fold 0 issued (= last input beat of vector 0) -> first output beat
    assert out_c[0] - in_c[SF - 1] == dut.latency


@pytest.mark.parametrize("N,O,simd,pe", [(8, 6, 1, 1), (12, 8, 2, 2), (9, 4, 3, 1), (4, 6, 4, 3)])
@pytest.mark.parametrize("slack", [0, 1])
@TR
def test_input_taken_during_later_folds(N, O, simd, pe, slack, tr):
    """A producer that delivers one beat every NF (+ slack) cycles, i.e. exactly (or a little
    below) the compute rate, is never refused: the unit takes the next vector into the free half
    while it computes folds 1..NF-1 of the current one (the old fold-0-only input would block such
    a producer for (NF-1)*SF cycles per vector)."""
    rng = np.random.default_rng(N * 7 + O + simd + pe + slack)
    q = make_qconv(rng, N, O)
    dut = MVU.from_qconv(q, simd=simd, pe=pe, timing_registers=tr)
    SF, NF = N // simd, O // pe
    assert dut.buffer_depth == 2 * SF and dut.buffer_bits == 2 * SF * 8 * simd
    x = rand_inputs(rng, 8, N)
    blocked = []
    in_c, out_c, got = timed_run(dut, x, period=NF + slack, blocked=blocked)
    check(got, golden_1x1(q, x), "rate-matched producer")
    assert blocked == [], f"input refused in cycles {blocked[:10]} although a half was free"
    assert in_c == [j * (NF + slack) for j in range(len(x) * SF)]
    if slack == 0:   # the compute keeps pace with the producer: a vector per SF*NF cycles
        firsts = out_c[::NF]
        assert list(np.diff(firsts)) == [SF * NF] * (len(x) - 1)


@pytest.mark.parametrize("seed", range(4))
@TR
def test_pingpong_rough_traffic(seed, tr):
    """Long random input gaps and output stalls around the ping-pong buffer: exact, in order,
    no beat lost or duplicated (run_mvu checks for extra output beats)."""
    rng = np.random.default_rng(100 + seed)
    N, O, simd, pe = [(12, 8, 2, 2), (6, 6, 1, 2), (8, 4, 8, 1), (3, 9, 1, 3)][seed]
    q = make_qconv(rng, N, O)
    dut = MVU.from_qconv(q, simd=simd, pe=pe, timing_registers=tr)
    x = rand_inputs(rng, 12, N)
    for traffic in (Traffic(gap=0.5, stall=0.1, burst=20, seed=seed),
                    Traffic(gap=0.05, stall=0.6, burst=9, seed=seed + 10),
                    Traffic.rough(seed)):
        check(run_mvu(dut, x, traffic), golden_1x1(q, x), f"{traffic}")


@pytest.mark.parametrize("period", [2, 3, 7])
@TR
def test_backpressure_periodic(period, tr):
    rng = np.random.default_rng(period)
    q = make_qconv(rng, 4, 4, relu=False)
    dut = MVU.from_qconv(q, simd=4, pe=4, timing_registers=tr)        # one output beat per cycle: hardest case
    x = rand_inputs(rng, 30, 4)
    _, out_c, got = timed_run(dut, x, consumer_ready=lambda c: c % period == 0)
    check(got, golden_1x1(q, x), f"periodic ready {period}")
    # when the consumer takes one beat every `period` cycles, the MVU keeps up exactly
    assert list(np.diff(out_c[5:])) == [period] * (len(out_c) - 6)


@pytest.mark.parametrize("N,O,simd,pe,requant,bank_depth", [
    (8, 6, 2, 2, "parallel", None), (6, 4, 1, 1, "parallel", None), (4, 4, 4, 4, "parallel", None),
    (4, 8, 4, 1, "parallel", None), (16, 4, 1, 2, "serial", None), (9, 1, 1, 1, "serial", None),
    (8, 6, 2, 2, "parallel", 3)])
def test_timing_registers_keep_cycles(N, O, simd, pe, requant, bank_depth):
    """The build without timing registers (iCE40) takes and gives every beat in the same cycle as
    the default build, with output stalls and a producer slower than the unit or not."""
    rng = np.random.default_rng(N + O + simd + pe)
    q = make_qconv(rng, N, O)
    x = rand_inputs(rng, 8, N)
    stall = rng.random(100000) < 0.4
    for period in (1, 2):
        runs = [timed_run(MVU.from_qconv(q, simd=simd, pe=pe, requant=requant, weight_bank_depth=bank_depth,
                                         timing_registers=tr), x,
                          consumer_ready=lambda c: not stall[c], period=period) for tr in (True, False)]
        check(runs[1][2], golden_1x1(q, x), "without timing registers")
        assert runs[0][0] == runs[1][0] and runs[0][1] == runs[1][1]


# ---- properties, validation, Verilog --------------------------------------------------------

def test_properties():
    rng = np.random.default_rng(1)
    q = make_qconv(rng, 8, 6, k=3, padding=1)
    dut = MVU.from_qconv(q, simd=6, pe=3)
    assert dut.N == 72 and dut.O == 6
    assert dut.cycles_per_vector == 12 * 2
    assert dut.multipliers == 18 and dut.requant_multipliers == 3
    assert dut.acc_bits == q.acc_bits
    assert dut.weight_bits == 72 * 6 * dut.w_bits
    assert dut.w_bits == 8


def test_acc_bits_minimal():
    dut = MVU(weights=[[1, 1]], bias=[0], mult=[1], shift=[1], simd=1, pe=1, relu=True)
    assert dut.acc_bits == 10                    # 0..510
    dut = MVU(weights=[[0, 0]], bias=[0], mult=[1], shift=[1], simd=2, pe=1, relu=True)
    assert dut.acc_bits == 1 and dut.w_bits == 1


def test_validation_messages():
    w = np.zeros((6, 8), int)
    kw = dict(weights=w, bias=[0] * 6, mult=[1] * 6, shift=[1] * 6, relu=True, name="fire2.squeeze")
    with pytest.raises(FoldingError, match=r"fire2\.squeeze: SIMD=3 does not divide 8 inputs.*\[1, 2, 4, 8\]"):
        MVU(simd=3, pe=1, **kw)
    with pytest.raises(FoldingError, match=r"PE=4 does not divide 6 output channels.*\[1, 2, 3, 6\]"):
        MVU(simd=1, pe=4, **kw)
    with pytest.raises(FoldingError, match=r"SIMD=16 does not divide 8"):
        MVU(simd=16, pe=1, **kw)
    with pytest.raises(FoldingError, match=r"PE=0"):
        MVU(simd=1, pe=0, **kw)
    with pytest.raises(FoldingError, match="integer"):
        MVU(simd=1.5, pe=1, **kw)
    with pytest.raises(UserError, match=r"mult\[2\]=70000"):
        MVU(simd=1, pe=1, **{**kw, "mult": [1, 1, 70000, 1, 1, 1]})
    with pytest.raises(UserError, match=r"shift\[0\]=0"):
        MVU(simd=1, pe=1, **{**kw, "shift": [0] * 6})
    with pytest.raises(UserError, match="bias has shape"):
        MVU(simd=1, pe=1, **{**kw, "bias": [0] * 5})
    assert issubclass(FoldingError, UserError)


def test_verilog_deterministic():
    rng = np.random.default_rng(3)
    q = make_qconv(rng, 4, 4, k=3, padding=1)
    texts = [verilog.convert(MVU.from_qconv(q, simd=6, pe=2), name="mvu", emit_src=False)
             for _ in range(2)]
    assert texts[0] == texts[1]
    assert "module mvu" in texts[0]


# ---- random shapes (hypothesis) ----------------------------------------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_shapes(data):
    N = data.draw(st.integers(1, 9), label="N")
    O = data.draw(st.integers(1, 6), label="O")
    simd = data.draw(st.sampled_from([d for d in range(1, N + 1) if N % d == 0]), label="simd")
    pe = data.draw(st.sampled_from([d for d in range(1, O + 1) if O % d == 0]), label="pe")
    relu = data.draw(st.booleans(), label="relu")
    in_signed = data.draw(st.booleans(), label="in_signed")
    seed = data.draw(st.integers(0, 2**16), label="seed")
    rng = np.random.default_rng(seed)
    q = make_qconv(rng, N, O, relu=relu, in_signed=in_signed,
                   wmax=int(rng.choice([1, 7, 127])), bias_range=int(rng.choice([0, 100, 10**6])))
    dut = MVU.from_qconv(q, simd=simd, pe=pe)
    x = rand_inputs(rng, 3, N, signed=in_signed)
    check(run_mvu(dut, x, Traffic.rough(seed)), golden_1x1(q, x),
          f"N={N} O={O} simd={simd} pe={pe} relu={relu} signed={in_signed}")


# ---- opt-in requant="serial" (digit-serial requantiser in LUTs, for tiny devices) ------------

@pytest.mark.parametrize("N,O,simd,pe,k", [(16, 4, 1, 2, 1), (17, 3, 1, 3, 1), (4, 6, 1, 2, 3),
                                           (8, 4, 1, 1, 1), (8, 6, 2, 3, 1), (2, 4, 1, 2, 3),
                                           (6, 4, 6, 2, 1), (3, 6, 1, 6, 1)])
@TR
def test_serial_requant_exact_rough_traffic(N, O, simd, pe, k, tr):
    """Bit-exact against the golden model under random input gaps and output stalls, for digit
    widths 1 (N/SIMD >= 16) up to 16 (N/SIMD == 1)."""
    rng = np.random.default_rng(N * 1000 + O * 100 + simd * 10 + pe + k)
    for relu in (True, False):
        q = make_qconv(rng, N, O, k=k, padding=k // 2, relu=relu)
        dut = MVU.from_qconv(q, simd=simd, pe=pe, requant="serial", timing_registers=tr)
        assert dut.requant_cycles <= dut.SF and dut.requant_multipliers == 0
        if k == 1:
            x = rand_inputs(rng, 10, N)
            exp = golden_1x1(q, x)
        else:
            img = rng.integers(0, 256, (N, 3, 4))
            x = im2col(img, k, k // 2)
            exp = golden.conv(img[None].astype(np.uint8), q)[0].reshape(O, -1).T
        for traffic in (Traffic.smooth(), Traffic.rough(seed=N + O),
                        Traffic(gap=0.3, stall=0.5, burst=9, seed=simd + pe)):
            check(run_mvu(dut, x, traffic), exp, f"serial relu={relu} {traffic}")


def test_serial_requant_extremes():
    rng = np.random.default_rng(11)
    w = rng.integers(-2000, 2000, (2, 16))
    b = rng.integers(-2**30, 2**30, 2)
    for mult, shift in (([65535, 40000], [48, 20]), ([1, 65535], [1, 1]), ([0, 32768], [3, 47])):
        dut = MVU(weights=w, bias=b, mult=mult, shift=shift, simd=1, pe=1, relu=False, requant="serial")
        assert dut.requant_digit_bits == 1 and dut.requant_cycles == 16
        x = np.vstack([rand_inputs(rng, 3, 16), np.full((1, 16), 255), np.zeros((1, 16), int)])
        exp = golden.requantize(x @ w.T + b, mult, shift, -128, 127)
        check(run_mvu(dut, x, Traffic.rough(3)), exp, f"serial wide mult={mult} shift={shift}")


@pytest.mark.parametrize("N,O,simd,pe", [(16, 4, 1, 2), (8, 6, 2, 2), (8, 6, 1, 6), (4, 4, 4, 4),
                                         (18, 2, 1, 1)])
def test_serial_requant_throughput_exact(N, O, simd, pe):
    """Same schedule as the parallel requantiser (a vector per SF*NF cycles, a beat every SF
    cycles), latency longer by requant_cycles - 1."""
    rng = np.random.default_rng(N + O + simd + pe)
    q = make_qconv(rng, N, O)
    ref = MVU.from_qconv(q, simd=simd, pe=pe)
    dut = MVU.from_qconv(q, simd=simd, pe=pe, requant="serial")
    x = rand_inputs(rng, 6, N)
    in_c, out_c, got = timed_run(dut, x)
    check(got, golden_1x1(q, x), "serial throughput run")
    r_in, r_out, _ = timed_run(ref, x)
    SF, NF = N // simd, O // pe
    assert dut.cycles_per_vector == ref.cycles_per_vector == SF * NF
    assert in_c == r_in
    assert dut.latency == ref.latency + dut.requant_cycles - 1
    assert list(np.diff(out_c)) == list(np.diff(r_out))
    assert [o - dut.latency for o in out_c] == [o - ref.latency for o in r_out]


def test_serial_requant_default_off_and_verilog_unchanged():
    rng = np.random.default_rng(12)
    q = make_qconv(rng, 8, 4)
    a = verilog.convert(MVU.from_qconv(q, simd=2, pe=2), name="m", emit_src=False)
    b = verilog.convert(MVU.from_qconv(q, simd=2, pe=2, requant="parallel"), name="m", emit_src=False)
    c = verilog.convert(MVU.from_qconv(q, simd=2, pe=2, requant="serial"), name="m", emit_src=False)
    assert a == b and a != c and c.count(" * ") == 4 < a.count(" * ")     # only the 2x2 MAC products
    with pytest.raises(UserError, match="requant"):
        MVU.from_qconv(q, simd=2, pe=2, requant="bitserial")


# ---- exact rounding ties and both clamp edges ----------------------------------------------------

# per output channel: weights over 2 inputs, bias, mult, shift; chosen so that every channel has
# exact ties and reaches both clamp edges (lo-1, lo, hi, hi+1) with some uint8 input pair
EDGE_W = [[1, -1], [-1, 1], [2, -1], [127, -126]]
EDGE_B = [0, -3, 5, 100]
# multipliers with few significant bits (5*2**13, 3*2**14, 9*2**12, 11*2**12) tie at these shifts
EDGE_MULT = {True: [40960, 40960, 49152, 40960], False: [49152, 36864, 45056, 40960]}
EDGE_SHIFT = {True: [15, 15, 16, 22], False: [16, 15, 15, 21]}


def edge_vectors(relu, per_kind=2, seed=0):
    """Input vectors (x0, x1) that put each channel's requantisation on an exact tie (for a
    positive and, where the clamp leaves it visible, a negative accumulator) and the rounded value
    exactly on each clamp edge; the kinds each channel's vectors cover (Python ints)."""
    rng = np.random.default_rng(seed)
    lo, hi = (0, 255) if relu else (-128, 127)
    x = np.stack(np.meshgrid(np.arange(256), np.arange(256), indexing="ij"), -1).reshape(-1, 2)
    picked, kinds_per_ch = [], []
    for w, b, mult, shift in zip(EDGE_W, EDGE_B, EDGE_MULT[relu], EDGE_SHIFT[relu]):
        acc = x @ np.array(w) + b
        num = acc * mult                              # < 2**31 here: exact in int64
        half = 1 << (shift - 1)
        q = (num + half) >> shift
        tie = (num % (1 << shift) == half) & (q >= lo + 1) & (q <= hi)   # half down would differ
        kinds = {"tie, acc > 0": tie & (acc > 0), "tie, acc < 0": tie & (acc < 0),
                 "lo-1": q == lo - 1, "lo": q == lo, "hi": q == hi, "hi+1": q == hi + 1}
        for mask in kinds.values():
            idx = np.flatnonzero(mask)
            if len(idx):
                picked += list(rng.choice(idx, min(per_kind, len(idx)), replace=False))
        kinds_per_ch.append(kinds)
    picked += list(rng.integers(0, len(x), 6))
    covered = [{k for k, mask in kinds.items() if mask[picked].any()} for kinds in kinds_per_ch]
    return x[picked], covered


@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("simd,pe", [(1, 1), (2, 2), (1, 4)])
def test_rounding_ties_and_clamp_edges(relu, simd, pe):
    """Half-up rounding on exact ties and saturation exactly at lo-1/lo/hi/hi+1 on every channel:
    an MVU that rounds half down, or clamps at hi+1, gives a different output on these vectors."""
    x, covered = edge_vectors(relu, seed=simd + 2 * pe)
    for ch, kinds in enumerate(covered):
        need = {"tie, acc > 0", "lo-1", "lo", "hi", "hi+1"} | (set() if relu else {"tie, acc < 0"})
        assert need <= kinds, f"channel {ch}: stimulus misses {need - kinds}"
    dut = MVU(weights=EDGE_W, bias=EDGE_B, mult=EDGE_MULT[relu], shift=EDGE_SHIFT[relu], simd=simd, pe=pe,
              relu=relu)
    lo, hi = (0, 255) if relu else (-128, 127)
    exp = golden.requantize(x @ np.array(EDGE_W).T + np.array(EDGE_B), EDGE_MULT[relu], EDGE_SHIFT[relu], lo, hi)
    check(run_mvu(dut, x, Traffic.rough(simd + pe)), exp, f"edges relu={relu} simd={simd} pe={pe}")


# ---- banked weight memory (weight_bank_depth: one registered stage after the block RAM) -----------

@pytest.mark.parametrize("N,O,simd,pe,bank_depth,requant,k", [
    (8, 6, 2, 2, 3, "parallel", 1),      # 12 words in 4 banks of 3
    (12, 8, 2, 2, 5, "parallel", 1),     # 24 words: 5 banks, the last one 4 words
    (12, 2, 1, 2, 5, "parallel", 1),     # NF == 1 (no ping-pong buffer): 12 words, 3 banks
    (6, 4, 1, 1, 1, "parallel", 1),      # one word per bank
    (4, 6, 1, 2, 7, "parallel", 3),      # 3x3: 36*3 = 108 words
    (16, 4, 1, 2, 9, "serial", 1)])      # with the digit-serial requantiser
def test_banked_weights_exact_rough_traffic(N, O, simd, pe, bank_depth, requant, k):
    """Bit-exact against the golden model under random input gaps and output stalls, for bank
    depths that do and do not divide the weight depth."""
    rng = np.random.default_rng(N * 1000 + O * 100 + simd * 10 + pe + bank_depth)
    for relu, in_signed in ((True, False), (False, True)):
        q = make_qconv(rng, N, O, k=k, padding=k // 2, relu=relu, in_signed=in_signed)
        dut = MVU.from_qconv(q, simd=simd, pe=pe, requant=requant, weight_bank_depth=bank_depth)
        assert dut.weight_banks == -(-dut.weight_depth // bank_depth) > 1
        if k == 1:
            x = rand_inputs(rng, 10, N, signed=in_signed)
            exp = golden_1x1(q, x)
        else:
            img = rand_inputs(rng, N, 12, signed=in_signed).reshape(N, 3, 4)
            x = im2col(img, k, k // 2)
            exp = golden.conv(img[None].astype(np.int8 if in_signed else np.uint8), q)[0].reshape(O, -1).T
        for traffic in (Traffic.rough(seed=N + O), Traffic(gap=0.3, stall=0.6, burst=9, seed=simd + pe)):
            check(run_mvu(dut, x, traffic), exp, f"banked {bank_depth} relu={relu} {traffic}")


@pytest.mark.parametrize("N,O,simd,pe,bank_depth", [(8, 6, 2, 2, 3), (12, 2, 1, 2, 5), (8, 4, 1, 1, 6)])
def test_banked_weights_throughput_and_latency(N, O, simd, pe, bank_depth):
    """The same schedule as one memory (a vector per SF*NF cycles, the same input acceptance),
    every output beat exactly one cycle later: ``latency`` (and the output FIFO) one more."""
    rng = np.random.default_rng(N + O + simd + pe + bank_depth)
    q = make_qconv(rng, N, O)
    ref = MVU.from_qconv(q, simd=simd, pe=pe)
    dut = MVU.from_qconv(q, simd=simd, pe=pe, weight_bank_depth=bank_depth)
    x = rand_inputs(rng, 6, N)
    in_c, out_c, got = timed_run(dut, x)
    check(got, golden_1x1(q, x), "banked throughput run")
    r_in, r_out, _ = timed_run(ref, x)
    assert dut.latency == ref.latency + 1 and dut.fifo_depth == ref.fifo_depth + 1
    assert in_c == r_in
    assert [o - 1 for o in out_c] == r_out
    assert out_c[0] - in_c[dut.SF - 1] == dut.latency


def test_banked_weight_image_and_one_memory_when_it_fits():
    rng = np.random.default_rng(21)
    q = make_qconv(rng, 8, 6)
    one = MVU.from_qconv(q, simd=2, pe=2)                           # 12 words of 32 bits
    banked = MVU.from_qconv(q, simd=2, pe=2, weight_bank_depth=5)   # 3 banks: 5, 5 and 2 words
    words = one.weight_words()
    image, width = banked.weight_memory_words()
    assert (banked.weight_banks, width, len(image)) == (3, 3 * one.weight_width, 5)
    mask = (1 << one.weight_width) - 1
    for a, word in enumerate(words):
        assert image[a % 5] >> (a // 5 * one.weight_width) & mask == word
    assert all(image[r] >> (2 * one.weight_width) == 0 for r in range(2, 5))   # past the last word
    # a bank depth that holds every word is one memory, the Verilog of weight_bank_depth=None
    ref = verilog.convert(one, name="m", emit_src=False)
    for depth in (12, 100):
        same = MVU.from_qconv(q, simd=2, pe=2, weight_bank_depth=depth)
        assert same.weight_banks == 1 and same.latency == one.latency
        assert verilog.convert(same, name="m", emit_src=False) == ref
    assert verilog.convert(banked, name="m", emit_src=False) != ref


def test_banked_weights_validation():
    from squeezehw.quant.sparse_weights import encode_for_mvu
    rng = np.random.default_rng(22)
    q = make_qconv(rng, 4, 4, weight=rng.choice([0, 3, -2, 5], (4, 4, 1, 1)))
    for bad in (0, -3, 2.5, True, "4"):
        with pytest.raises(UserError, match="weight_bank_depth"):
            MVU.from_qconv(q, simd=1, pe=1, weight_bank_depth=bad)
    code = encode_for_mvu(np.asarray(q.weight).reshape(4, 4), [3, -2, 5], k=2, pe=1, simd=1, fmt="bitmap")
    MVU.from_qconv(q, simd=1, pe=1, weight_code=code)._MustUse__silence = True     # the code is valid
    with pytest.raises(UserError, match="WeightDecoder"):
        MVU.from_qconv(q, simd=1, pe=1, weight_code=code, weight_bank_depth=4)
