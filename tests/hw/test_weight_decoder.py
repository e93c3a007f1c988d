"""WeightDecoder (compressed weights -> dense vectors) against the Python reference, and the MVU
reading compressed weights against the golden model and the dense MVU (values and cycles)."""
from __future__ import annotations

import numpy as np
import pytest
from amaranth.sim import Simulator
from squeezehw.sim.streamsim import Traffic, pack_lanes, simulate, unpack_lanes
from test_mvu import check, im2col, make_qconv

from squeezehw.errors import UserError
from squeezehw.hw.mvu import MVU
from squeezehw.hw.weight_decoder import WeightDecoder
from squeezehw.quant import golden
from squeezehw.quant.sparse_weights import (
    PackedWeights,
    choose_layout,
    decode_stream,
    decode_words,
    emit_schedule,
    encode_for_mvu,
    encode_stream,
    mvu_vectors,
    pace,
    pack,
)

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


def random_codebook(rng, k, zero=False, lo=-128, hi=127):
    """Up to 2**k distinct non-zero entries (plus 0 when ``zero``, for dense-index)."""
    vals = [int(v) for v in rng.permutation(np.arange(lo, hi + 1)) if v != 0][:(1 << k) - int(zero)]
    return vals + [0] if zero else vals


def sparse_weights(rng, O, N, codebook, density, pe, simd):
    """Random weights with the given density, plus one all-zero and one all-dense weight vector
    (in the MVU's vector order) whenever there are at least 3 vectors."""
    nz = [c for c in codebook if c != 0]
    w = np.where(rng.random((O, N)) < density, rng.choice(nz, (O, N)), 0)
    NF, SF = O // pe, N // simd
    if NF * SF >= 3:
        v = w.reshape(NF, pe, SF, simd)
        v[0, :, 1, :] = 0                                      # vector 1: all zero
        v[NF - 1, :, SF - 1, :] = rng.choice(nz, (pe, simd))   # last vector: all non-zero
        w = v.reshape(O, N)
    return w


def decoded(dut, words):
    return np.array([unpack_lanes(x, dut.lanes, dut.lane_bits, signed=True) for x in words],
                    dtype=np.int64).reshape(-1, dut.lanes)


# PE, SIMD, k, density, format
CASES = [
    (2, 4, 4, 0.3, "bitmap"),
    (3, 3, 2, 0.7, "bitmap"),
    (1, 1, 3, 0.5, "bitmap"),
    (4, 8, 6, 0.1, "bitmap"),
    (2, 4, 8, 1.0, "bitmap"),
    (2, 2, 1, 0.0, "bitmap"),
    (2, 4, 4, 0.5, "dense-index"),
    (1, 3, 5, 0.9, "dense-index"),
]


@pytest.mark.parametrize("pe,simd,k,density,fmt", CASES)
def test_decoder_matches_reference(pe, simd, k, density, fmt):
    """Every vector exactly once, in order, value for value, over 3+ periods (wraps), under random
    back-pressure; and the Python reference from the words equals the dense weights."""
    rng = np.random.default_rng(pe * 1000 + simd * 100 + k * 10 + int(density * 10))
    O, N = pe * 3, simd * 4
    cb = random_codebook(rng, k, zero=fmt == "dense-index")
    w = sparse_weights(rng, O, N, cb, density, pe, simd)
    packed = encode_for_mvu(w, cb, k=k, pe=pe, simd=simd, fmt=fmt)
    assert packed.pace.full_rate
    n = 3 * packed.stream.vectors + 2
    ref = mvu_vectors(w, pe, simd)
    expected = decode_words(packed, n)
    assert np.array_equal(expected, np.concatenate([ref] * 4)[:n])
    for seed in (1, 2):
        dut = WeightDecoder(packed)
        r = simulate(dut, {}, {"o": n}, traffic=Traffic.rough(seed))
        check(decoded(dut, r["o"]), expected, f"{fmt} pe={pe} simd={simd} k={k} seed={seed}")


@pytest.mark.parametrize("vectors", [1, 2, 3])
def test_bitmap_short_periods(vectors):
    """Periods of 1-3 vectors: the popcount ROM is read two vectors ahead (modulo the period) and
    the pad joins the last vector's length; every vector still comes exactly once, in order."""
    rng = np.random.default_rng(40 + vectors)
    cb = random_codebook(rng, 3)
    w = sparse_weights(rng, 2, 3 * vectors, cb, 0.5, 2, 3)
    packed = encode_for_mvu(w, cb, k=3, pe=2, simd=3, fmt="bitmap")
    assert packed.stream.vectors == vectors
    n = 4 * vectors + 1
    expected = decode_words(packed, n)
    assert np.array_equal(expected, np.concatenate([mvu_vectors(w, 2, 3)] * 5)[:n])
    dut = WeightDecoder(packed)
    check(decoded(dut, simulate(dut, {}, {"o": n}, traffic=Traffic.rough(vectors))["o"]), expected,
          f"{vectors} vectors")


def test_layout_shaped_for_the_boards_block_ram():
    """With a board, the word width is the one whose memory takes the fewest of its block RAMs
    (never more than the narrowest width's), still at full rate, and the decoder reads it exactly."""
    from squeezehw.plan.resources import blocks_for
    rng = np.random.default_rng(5)
    cb = random_codebook(rng, 6)
    w = sparse_weights(rng, 8, 20 * 120, cb, 0.3, 1, 20)       # 960 vectors of 20 lanes
    narrow = encode_for_mvu(w, cb, k=6, pe=1, simd=20, fmt="bitmap")
    shaped = encode_for_mvu(w, cb, k=6, pe=1, simd=20, fmt="bitmap", board="tang-mega-138k-pro")
    blocks = lambda p: blocks_for(p.word_bits, p.depth, "tang-mega-138k-pro")  # noqa: E731
    assert shaped.pace.full_rate and shaped.word_bits >= narrow.word_bits
    assert blocks(shaped) < blocks(narrow)      # here: 58 x 939 words, 4 BSRAMs; 107 x 509, 3
    # no width up to twice the narrowest takes fewer blocks
    P = narrow.stream.total_bits
    assert blocks(shaped) == min(blocks_for(W, -(-P // W), "tang-mega-138k-pro")
                                 for W in range(narrow.word_bits, 2 * narrow.word_bits + 1))
    n = narrow.stream.vectors + 3
    dut = WeightDecoder(shaped)
    check(decoded(dut, simulate(dut, {}, {"o": n}, traffic=Traffic.rough(3))["o"]),
          np.concatenate([mvu_vectors(w, 1, 20)] * 2)[:n], "board-shaped words")


def _transfer_cycles(dut, n):
    """Cycles (from reset) of the first ``n`` transfers on ``o`` with ``o.ready`` always high."""
    stamps = []

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        cycle = 0
        while len(stamps) < n:
            _, _, valid = await ctx.tick().sample(dut.o.valid)
            if valid:
                stamps.append(cycle)
            cycle += 1

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return stamps


@pytest.mark.parametrize("pe,simd,k,density,fmt", [CASES[0], CASES[3], CASES[6]])
def test_full_rate_and_cycle_model(pe, simd, k, density, fmt):
    """With an always-ready consumer the hardware offers each vector exactly `stages` cycles after the
    cycle model decodes it; in steady state one per cycle (no bubble at the wraps)."""
    rng = np.random.default_rng(7 + k)
    cb = random_codebook(rng, k, zero=fmt == "dense-index")
    w = sparse_weights(rng, pe * 2, simd * 6, cb, density, pe, simd)
    packed = encode_for_mvu(w, cb, k=k, pe=pe, simd=simd, fmt=fmt)
    n = 4 * packed.stream.vectors
    model = emit_schedule(packed.stream, packed.word_bits, packed.buffer_bits, n)
    hw = _transfer_cycles(WeightDecoder(packed), n)
    stages = WeightDecoder.stages_for(fmt)
    assert hw == [c + stages for c in model]
    # over 4 periods the only cycles without a vector are the warm-up stalls (none at the wraps),
    # and the last two periods come one vector per cycle
    assert hw[-1] == (n - 1) + packed.pace.warmup_stalls + stages
    tail = hw[-2 * packed.stream.vectors:]
    assert tail == list(range(tail[0], tail[0] + len(tail)))


def test_starving_layout_is_predicted():
    """A word narrower than the chosen one starves; the model says so and the hardware's schedule
    is still the model's (so the model is what the layout choice can trust)."""
    rng = np.random.default_rng(3)
    cb = random_codebook(rng, 4)
    w = sparse_weights(rng, 4, 16, cb, 0.5, 2, 4)
    good = encode_for_mvu(w, cb, k=4, pe=2, simd=4)
    W = good.word_bits - 3
    C = good.buffer_bits // good.word_bits * W
    p = pace(good.stream, W, C)
    assert not p.full_rate and p.loop_cycles > p.loop_vectors
    bad = PackedWeights(good.stream, W, C, pack(good.stream, W), p)
    n = 3 * good.stream.vectors
    hw = _transfer_cycles(WeightDecoder(bad), n)
    assert hw == [c + WeightDecoder.stages_for("bitmap") for c in emit_schedule(good.stream, W, C, n)]
    dut = WeightDecoder(bad)
    check(decoded(dut, simulate(dut, {}, {"o": n}, traffic=Traffic.rough(4))["o"]),
          decode_words(bad, n), "narrow word")


def test_layout_is_narrowest():
    rng = np.random.default_rng(11)
    cb = random_codebook(rng, 5)
    w = sparse_weights(rng, 8, 24, cb, 0.3, 4, 6)
    packed = encode_for_mvu(w, cb, k=5, pe=4, simd=6)
    s = packed.stream
    assert packed.word_bits * s.vectors >= s.total_bits
    narrower = packed.word_bits - 1
    if narrower * s.vectors >= s.total_bits:      # the next narrower word fails at any tried buffer
        assert not any(pace(s, narrower, n * narrower).full_rate for n in range(2, 40))
    W = packed.word_bits
    assert packed.buffer_bits % W == 0
    least = max(s.vector_bits[:-1] + (s.vector_bits[-1] + packed.pad_bits,)) + W
    assert packed.buffer_bits - W < least or not pace(s, W, packed.buffer_bits - W).full_rate


def test_bad_input():
    with pytest.raises(UserError, match="more than 2\\*\\*2"):
        encode_stream(np.zeros((1, 2), int), [1, 2, 3, 4, 5], 2, "bitmap")
    with pytest.raises(UserError, match="not in the codebook"):
        encode_stream(np.array([[1, 7]]), [1, 2], 2, "bitmap")
    with pytest.raises(UserError, match="not in the codebook"):
        encode_stream(np.array([[1, 0]]), [1, 2], 2, "dense-index")    # 0 needs an entry here
    with pytest.raises(UserError, match="weight format"):
        encode_stream(np.array([[1, 0]]), [1, 2], 2, "huffman")
    # an MVU given a stream that is not its weights, or folded differently
    rng = np.random.default_rng(5)
    cb = random_codebook(rng, 3)
    q = make_qconv(rng, 4, 4, weight=sparse_weights(rng, 4, 4, cb, 0.5, 2, 2).reshape(4, 4, 1, 1))
    w = np.asarray(q.weight).reshape(4, 4)
    other = w.copy()
    other[1, 2] = cb[0] if other[1, 2] != cb[0] else cb[1]
    with pytest.raises(UserError, match="differ from the layer's weights at vector"):
        MVU.from_qconv(q, simd=2, pe=2, weight_code=encode_for_mvu(other, cb, k=3, pe=2, simd=2))
    with pytest.raises(UserError, match="encode them with this layer's folding"):
        MVU.from_qconv(q, simd=2, pe=2, weight_code=encode_for_mvu(w, cb, k=3, pe=1, simd=2))


# ---- the MVU with compressed weights ---------------------------------------------------------

def _mvu_case(seed, C, O, K, k, density, fmt="bitmap"):
    rng = np.random.default_rng(seed)
    cb = random_codebook(rng, k, zero=fmt == "dense-index")
    nz = [c for c in cb if c]
    w = np.where(rng.random((O, C, K, K)) < density, rng.choice(nz, (O, C, K, K)), 0)
    q = make_qconv(rng, C, O, k=K, padding=K // 2, weight=w)
    img = rng.integers(0, 256, (C, 4, 4))
    exp = golden.conv(img[None].astype(np.uint8), q)[0].reshape(O, -1).T
    return q, cb, im2col(img, K, K // 2), exp


def _mvu_out(dut, vecs, traffic):
    beats = [pack_lanes(v[j * dut.simd:(j + 1) * dut.simd]) for v in vecs for j in range(dut.SF)]
    r = simulate(dut, {"i": beats}, {"o": len(vecs) * dut.NF}, traffic=traffic, extra_cycles=20)
    got = [v for word in r["o"] for v in unpack_lanes(word, dut.pe, signed=not dut.relu)]
    return np.array(got, dtype=np.int64).reshape(len(vecs), dut.O)


# C, O, K, SIMD, PE, k, density, format
MVU_CASES = [(8, 6, 1, 4, 2, 4, 0.3, "bitmap"), (4, 4, 3, 9, 2, 3, 0.5, "bitmap"),
             (8, 8, 1, 8, 8, 5, 0.2, "bitmap"), (4, 6, 1, 1, 1, 2, 0.9, "dense-index"),
             (2, 4, 3, 6, 1, 6, 0.4, "dense-index")]


@pytest.mark.parametrize("C,O,K,simd,pe,k,density,fmt", MVU_CASES)
def test_mvu_compressed_bit_exact(C, O, K, simd, pe, k, density, fmt):
    q, cb, vecs, exp = _mvu_case(C * 100 + O + K + simd + pe, C, O, K, k, density, fmt)
    wmat = np.asarray(q.weight).transpose(0, 2, 3, 1).reshape(O, -1)
    code = encode_for_mvu(wmat, cb, k=k, pe=pe, simd=simd, fmt=fmt)
    for seed in (1, 2):
        dut = MVU.from_qconv(q, simd=simd, pe=pe, weight_code=code)
        check(_mvu_out(dut, vecs, Traffic.rough(seed)), exp, f"compressed {fmt} simd={simd} pe={pe} seed={seed}")


def _mvu_stamps(dut, vecs):
    """Cycles of every output beat with the input always offered and the output always ready."""
    beats = [pack_lanes(v[j * dut.simd:(j + 1) * dut.simd]) for v in vecs for j in range(dut.SF)]
    stamps = []
    n = len(vecs) * dut.NF

    async def feed(ctx):
        for b in beats:
            ctx.set(dut.i.payload, b)
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
        ctx.set(dut.i.valid, 0)

    async def take(ctx):
        ctx.set(dut.o.ready, 1)
        cycle = 0
        while len(stamps) < n:
            _, _, valid = await ctx.tick().sample(dut.o.valid)
            if valid:
                stamps.append(cycle)
            cycle += 1
            assert cycle < 100 * n + 1000, "MVU stopped"

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(feed, background=True)
    sim.add_testbench(take)
    sim.run()
    return stamps


@pytest.mark.parametrize("C,O,K,simd,pe,k,density,fmt", [MVU_CASES[0], MVU_CASES[1], MVU_CASES[3]])
def test_mvu_compressed_same_pace_as_dense(C, O, K, simd, pe, k, density, fmt):
    """Smooth traffic: every output beat of the compressed MVU comes a constant number of cycles
    after the dense MVU's (the decoder's one-off start-up after reset, at most its latency plus
    its warm-up stalls), so the cycles per vector (and per frame) are the dense unit's."""
    q, cb, vecs, _ = _mvu_case(5 + k, C, O, K, k, density, fmt)
    wmat = np.asarray(q.weight).transpose(0, 2, 3, 1).reshape(O, -1)
    code = encode_for_mvu(wmat, cb, k=k, pe=pe, simd=simd, fmt=fmt)
    dense = _mvu_stamps(MVU.from_qconv(q, simd=simd, pe=pe), vecs)
    comp = _mvu_stamps(MVU.from_qconv(q, simd=simd, pe=pe, weight_code=code), vecs)
    offsets = {c - d for c, d in zip(comp, dense)}
    assert len(offsets) == 1, f"compressed MVU's pace differs from the dense one: offsets {sorted(offsets)}"
    offset = offsets.pop()
    assert 0 <= offset <= WeightDecoder.latency_for(fmt) + code.pace.warmup_stalls


def test_encode_model_and_accelerator_names():
    """encode_model gives every conv a stream that decodes to its weights; the accelerator refuses
    codes for layers it does not have."""
    from squeezehw.plan.folding import default_folding
    from squeezehw.plan.lowering import lower
    from squeezehw.quant.random_model import random_model
    from squeezehw.quant.sparse_weights import encode_model
    rng = np.random.default_rng(2)
    model = random_model(rng, size=6, classes=3)
    for c in model.convs():
        c.weight[...] = np.where(rng.random(c.weight.shape) < 0.3, rng.choice([-9, 4, 77], c.weight.shape), 0)
    fold = default_folding(model)
    codes = encode_model(model, fold)
    assert set(codes) == {c.name for c in model.convs()}
    for c in model.convs():
        w = np.asarray(c.weight).transpose(0, 2, 3, 1).reshape(c.out_ch, -1)
        assert np.array_equal(decode_stream(codes[c.name].stream),
                              mvu_vectors(w, fold[c.name].pe, fold[c.name].simd))
    with pytest.raises(UserError, match="not convs of"):
        lower(model, fold, weight_codes={"features.9": codes["features.0"]})
    with pytest.raises(UserError, match="encode them with this layer's folding"):
        lower(model, fold, weight_codes={"features.0": codes["classifier.1"]}).accelerator()
