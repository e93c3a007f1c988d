"""The golden model against an independent, deliberately naive reference.

The reference below is written from docs/numerics.md alone: plain Python loops over Python ints
(arbitrary precision, so nothing can wrap), floor division for the shift, explicit bounds checks
for padding and for the max-pool's overhanging windows.  Every comparison is exact integer equality,
and a mismatch names the layer, pixel and channel.  A third opinion comes from torch's float64
conv on integer data (exact: every partial sum is an integer far below 2**53).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from squeezehw.quant import golden
from squeezehw.quant.intmodel import IntModel, QAdd, QConv, QFire, QHead, QMaxPool

# ---------------------------------------------------------------------------------------------
# The reference: nested loops over Python ints.
# ---------------------------------------------------------------------------------------------


def ref_requant(acc: int, mult: int, shift: int, lo: int, hi: int) -> int:
    v = (acc * mult + 2 ** (shift - 1)) // 2 ** shift      # // is floor: round half up
    return min(max(v, lo), hi)


def ref_conv_acc(x, w, b, stride, pad):
    """x: [C][H][W] ints, w: [O][C][K][K], b: [O] -> [O][Ho][Wo] exact accumulators."""
    c_in, h, wd = len(x), len(x[0]), len(x[0][0])
    o_n, k = len(w), len(w[0][0])
    ho = (h + 2 * pad - k) // stride + 1
    wo = (wd + 2 * pad - k) // stride + 1
    out = []
    for o in range(o_n):
        plane = []
        for y in range(ho):
            row = []
            for xx in range(wo):
                acc = b[o]
                for c in range(c_in):
                    for ky in range(k):
                        iy = y * stride - pad + ky
                        if iy < 0 or iy >= h:
                            continue
                        for kx in range(k):
                            ix = xx * stride - pad + kx
                            if ix < 0 or ix >= wd:
                                continue
                            acc += w[o][c][ky][kx] * x[c][iy][ix]
                row.append(acc)
            plane.append(row)
        out.append(plane)
    return out


def ref_conv(x, q: QConv):
    acc = ref_conv_acc(x, q.weight.tolist(), q.bias.tolist(), q.stride, q.padding)
    lo, hi = (0, 255) if q.relu else (-128, 127)
    mult, shift = q.mult.tolist(), q.shift.tolist()
    return [[[ref_requant(a, mult[o], shift[o], lo, hi) for a in row] for row in plane]
            for o, plane in enumerate(acc)]


def ref_pool_size(n: int, k: int, s: int) -> int:
    out = math.ceil((n - k) / s) + 1
    if (out - 1) * s >= n:          # PyTorch: the last window must start inside the input
        out -= 1
    return out


def ref_maxpool(x, k=3, s=2):
    h, w = len(x[0]), len(x[0][0])
    ho, wo = ref_pool_size(h, k, s), ref_pool_size(w, k, s)
    out = []
    for plane in x:
        rows = []
        for y in range(ho):
            row = []
            for xx in range(wo):
                vals = [plane[y * s + ky][xx * s + kx] for ky in range(k) for kx in range(k)
                        if y * s + ky < h and xx * s + kx < w]
                row.append(max(vals))
            rows.append(row)
        out.append(rows)
    return out


def ref_add(a, b, q: QAdd):
    return [[[min(max((av * q.mult_a + bv * q.mult_b + 2 ** (q.shift - 1)) // 2 ** q.shift, 0), 255)
              for av, bv in zip(ra, rb)] for ra, rb in zip(pa, pb)] for pa, pb in zip(a, b)]


def ref_head(x, q: QHead):
    fmap = ref_conv(x, q.conv)
    logits = [sum(sum(row) for row in plane) for plane in fmap]
    best = 0
    for i, v in enumerate(logits):
        if v > logits[best]:        # strictly greater: the lowest index wins a tie
            best = i
    return fmap, logits, best


def ref_run(model: IntModel, image):
    """One image (C, H, W) through the whole model; returns (logits, class, trace)."""
    x = image.tolist()
    trace = {}
    for layer in model.layers:
        if isinstance(layer, QConv):
            x = ref_conv(x, layer)
        elif isinstance(layer, QMaxPool):
            x = ref_maxpool(x, layer.kernel, layer.stride)
        elif isinstance(layer, QFire):
            s = ref_conv(x, layer.squeeze)
            y = ref_conv(s, layer.expand1x1) + ref_conv(s, layer.expand3x3)   # list concat = cat
            trace[f"{layer.name}.squeeze"] = s
            if layer.bypass is not None:
                trace[f"{layer.name}.concat"] = y
                b = x if layer.bypass.conv is None else ref_conv(x, layer.bypass.conv)
                y = ref_add(y, b, layer.bypass)
            x = y
        elif isinstance(layer, QHead):
            fmap, logits, best = ref_head(x, layer)
            trace[layer.name] = fmap
            return logits, best, trace
        trace[layer.name] = x
    raise AssertionError("no head")


# ---------------------------------------------------------------------------------------------
# Helpers: random integer layers and models, exact comparison with a useful message.
# ---------------------------------------------------------------------------------------------


def assert_same(got: np.ndarray, want, what: str):
    want = np.asarray(want, dtype=np.int64)
    got = np.asarray(got).astype(np.int64)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != reference {want.shape}"
    bad = np.argwhere(got != want)
    if len(bad):
        idx = tuple(bad[0])
        ch, rest = idx[0], idx[1:]
        raise AssertionError(f"{what}: {len(bad)} values differ; first at channel {ch}, pixel "
                             f"{rest}: golden {got[idx]} != reference {want[idx]}")


def rand_conv(rng, name, cin, cout, k, stride, pad, *, relu=True, in_signed=False, w_bits=8,
              extreme=False, big_shift=False) -> QConv:
    qmax = 2 ** (w_bits - 1) - 1
    if extreme:
        w = rng.choice([-qmax, qmax], size=(cout, cin, k, k))
    else:
        w = rng.integers(-qmax, qmax + 1, size=(cout, cin, k, k))
    bias = rng.integers(-3000, 3000, size=cout)
    if big_shift:
        shift = rng.integers(30, 49, size=cout)
        mult = rng.integers(2 ** 15, 2 ** 16, size=cout)
    else:
        shift = rng.integers(8, 20, size=cout)
        mult = rng.integers(1, 2 ** 16, size=cout)
    return QConv(name=name, in_ch=cin, out_ch=cout, kernel=k, stride=stride, padding=pad, relu=relu,
                 weight=w.astype(np.int8), bias=bias.astype(np.int64), mult=mult.astype(np.int64),
                 shift=shift.astype(np.int64), w_bits=w_bits, in_signed=in_signed,
                 w_scale=np.ones(cout))


def rand_input(rng, shape, *, signed=False, kind="random"):
    lo, hi = (-128, 127) if signed else (0, 255)
    if kind == "zeros":
        return np.zeros(shape, np.int8 if signed else np.uint8)
    if kind == "max":
        return np.full(shape, hi, np.int8 if signed else np.uint8)
    if kind == "min":
        return np.full(shape, lo, np.int8 if signed else np.uint8)
    return rng.integers(lo, hi + 1, size=shape).astype(np.int8 if signed else np.uint8)


def tiny_model(rng, *, conv1_kernel=3, conv1_stride=2, conv1_pad=0, size=17, w_bits=8) -> IntModel:
    """Every layer type: conv1, max-pool, Fire, Fire + simple bypass, Fire + complex bypass, head."""
    def fire(name, cin, s, e1, e3, bypass):
        q = QFire(name, rand_conv(rng, f"{name}.squeeze", cin, s, 1, 1, 0, w_bits=w_bits),
                  rand_conv(rng, f"{name}.expand1x1", s, e1, 1, 1, 0, w_bits=w_bits),
                  rand_conv(rng, f"{name}.expand3x3", s, e3, 3, 1, 1, w_bits=w_bits))
        if bypass == "simple":
            q.bypass = QAdd(f"{name}.add", int(rng.integers(1, 2 ** 16)), int(rng.integers(1, 2 ** 16)),
                            int(rng.integers(14, 18)))
        elif bypass == "complex":
            q.bypass = QAdd(f"{name}.add", int(rng.integers(1, 2 ** 16)), int(rng.integers(1, 2 ** 16)),
                            int(rng.integers(14, 18)),
                            rand_conv(rng, f"{name}.bypass", cin, e1 + e3, 1, 1, 0, relu=False,
                                      w_bits=w_bits))
        return q
    layers = [rand_conv(rng, "features.0", 3, 6, conv1_kernel, conv1_stride, conv1_pad, w_bits=w_bits),
              QMaxPool("features.2"),
              fire("features.3", 6, 3, 4, 4, "none"),
              fire("features.4", 8, 2, 5, 3, "simple"),
              fire("features.5", 8, 3, 3, 3, "complex"),
              QMaxPool("features.6"),
              QHead("classifier.1", rand_conv(rng, "classifier.1", 6, 5, 1, 1, 0, w_bits=w_bits))]
    return IntModel("tiny", 3, size, size, layers, w_bits=w_bits)


# ---------------------------------------------------------------------------------------------
# Requantisation
# ---------------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(acc=st.integers(-(2 ** 31), 2 ** 31 - 1), mult=st.integers(0, 2 ** 16 - 1),
       shift=st.integers(1, 48), relu=st.booleans())
def test_requantize_matches_reference(acc, mult, shift, relu):
    lo, hi = (0, 255) if relu else (-128, 127)
    got = int(golden.requantize(np.array([acc]), mult, shift, lo, hi)[0])
    assert got == ref_requant(acc, mult, shift, lo, hi), (acc, mult, shift)


@st.composite
def exact_ties(draw):
    """(acc, mult, shift) with acc*mult/2**shift exactly k + 0.5, positive or negative, and k near the
    clamp ranges: mult = m*2**j with m odd, acc = (2t+1)*2**(shift-1-j), so the value is (2t+1)*m/2."""
    m = 2 * draw(st.integers(0, 127)) + 1
    j = draw(st.integers(0, 16 - m.bit_length()))
    shift = draw(st.integers(j + 1, 48))
    t = draw(st.integers(-(300 // m) - 1, 300 // m))
    return (2 * t + 1) << (shift - 1 - j), m << j, shift


@settings(max_examples=300, deadline=None)
@given(tie=exact_ties(), relu=st.booleans())
def test_requantize_exact_ties_round_half_up(tie, relu):
    """Random exact ties of both signs (random (acc, mult, shift) almost never tie, so the test
    above cannot see a rounding rule that differs only on ties): the result is the half rounded up."""
    acc, mult, shift = tie
    num = acc * mult
    assert num % (1 << shift) == 1 << (shift - 1)            # really a tie
    lo, hi = (0, 255) if relu else (-128, 127)
    half_up = (num >> shift) + 1            # num / 2**shift = k + 0.5 with k = num >> shift: up is k + 1
    got = int(golden.requantize(np.array([acc]), mult, shift, lo, hi)[0])
    assert got == min(max(half_up, lo), hi), (acc, mult, shift)
    assert got == ref_requant(acc, mult, shift, lo, hi)


@pytest.mark.parametrize("acc,mult,shift,want", [
    (5, 1, 1, 3),      # 2.5 -> 3   (half up)
    (-5, 1, 1, -2),    # -2.5 -> -2 (half up, towards +infinity)
    (-7, 1, 1, -3),    # -3.5 -> -3
    (-6, 1, 2, -1),    # -1.5 -> -1
    (-1, 1, 1, 0),     # -0.5 -> 0
    (-3, 1, 1, -1),    # -1.5 -> -1
    (3, 1, 1, 2),      # 1.5 -> 2
    (1, 1, 48, 0),
    (2 ** 47, 1, 48, 1),   # exactly one half at the largest shift
])
def test_requantize_rounding_ties(acc, mult, shift, want):
    assert ref_requant(acc, mult, shift, -128, 127) == want
    assert int(golden.requantize(np.array([acc]), mult, shift, -128, 127)[0]) == want


# ---------------------------------------------------------------------------------------------
# Convolutions
# ---------------------------------------------------------------------------------------------

CONV_CASES = [  # (kernel, stride, pad, relu, signed input, size)
    (1, 1, 0, True, False, 5),
    (1, 1, 0, False, False, 4),
    (3, 1, 1, True, False, 5),
    (3, 1, 1, False, False, 6),
    (3, 2, 0, True, False, 7),
    (3, 2, 0, True, False, 8),
    (7, 2, 0, True, False, 11),
    (7, 2, 3, True, False, 10),
    (1, 1, 0, True, True, 4),
    (3, 1, 1, False, True, 5),
]


@pytest.mark.parametrize("k,stride,pad,relu,signed,size", CONV_CASES)
@pytest.mark.parametrize("kind", ["random", "zeros", "max", "min"])
@pytest.mark.parametrize("extreme", [False, True])
def test_conv_matches_reference(k, stride, pad, relu, signed, size, kind, extreme):
    rng = np.random.default_rng(hash((k, stride, pad, relu, signed, size, kind, extreme)) % 2 ** 32)
    q = rand_conv(rng, "c", 3, 4, k, stride, pad, relu=relu, in_signed=signed, extreme=extreme,
                  big_shift=extreme)
    x = rand_input(rng, (2, 3, size, size), signed=signed, kind=kind)
    got_acc = golden.conv_acc(x, q.weight, q.bias, stride, pad, in_max=128 if signed else 255)
    got = golden.conv(x, q)
    assert got.dtype == (np.uint8 if relu else np.int8)
    for n in range(x.shape[0]):
        want_acc = ref_conv_acc(x[n].tolist(), q.weight.tolist(), q.bias.tolist(), stride, pad)
        assert_same(got_acc[n], want_acc, f"conv {k}x{k}/{stride} pad {pad} accumulator, image {n}")
        assert_same(got[n], ref_conv(x[n].tolist(), q), f"conv {k}x{k}/{stride} pad {pad}, image {n}")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2 ** 32 - 1), k=st.sampled_from([1, 3]), stride=st.sampled_from([1, 2]),
       cin=st.integers(1, 4), cout=st.integers(1, 4), h=st.integers(3, 7), w=st.integers(3, 7),
       w_bits=st.integers(2, 8), relu=st.booleans())
def test_conv_random_shapes(seed, k, stride, cin, cout, h, w, w_bits, relu):
    rng = np.random.default_rng(seed)
    pad = 1 if (k == 3 and stride == 1) else 0
    q = rand_conv(rng, "c", cin, cout, k, stride, pad, relu=relu, w_bits=w_bits)
    x = rand_input(rng, (1, cin, h, w))
    assert_same(golden.conv(x, q)[0], ref_conv(x[0].tolist(), q), "random conv")


@pytest.mark.parametrize("k,stride,pad", [(1, 1, 0), (3, 1, 1), (3, 2, 0), (7, 2, 0), (7, 2, 3)])
def test_conv_acc_matches_torch_float64(k, stride, pad):
    """Third opinion: torch's float64 conv on integer data is exact at these magnitudes."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(k * 100 + stride * 10 + pad)
    q = rand_conv(rng, "c", 16, 8, k, stride, pad, extreme=True)
    x = rand_input(rng, (2, 16, 15, 15))
    want = torch.nn.functional.conv2d(torch.from_numpy(x.astype(np.float64)),
                                      torch.from_numpy(q.weight.astype(np.float64)),
                                      torch.from_numpy(q.bias.astype(np.float64)),
                                      stride=stride, padding=pad).numpy()
    assert np.all(want == np.rint(want))
    got = golden.conv_acc(x, q.weight, q.bias, stride, pad)
    for n in range(2):
        assert_same(got[n], want[n].astype(np.int64), f"torch conv {k}x{k}/{stride} image {n}")


def test_conv_large_accumulators_use_exact_path():
    """Accumulators beyond float32's 2**24 must still be exact (golden switches to float64)."""
    rng = np.random.default_rng(7)
    q = rand_conv(rng, "c", 64, 3, 3, 1, 1, extreme=True)      # bound 64*9*127*255 ~ 1.9e7 > 2**24
    q.bias = np.array([2 ** 30, -(2 ** 30), 0])
    x = rand_input(rng, (1, 64, 4, 4), kind="max")
    want = ref_conv_acc(x[0].tolist(), q.weight.tolist(), q.bias.tolist(), 1, 1)
    assert_same(golden.conv_acc(x, q.weight, q.bias, 1, 1)[0], want, "large accumulator")


# ---------------------------------------------------------------------------------------------
# Max-pool, bypass add, head
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("h,w", [(3, 3), (4, 4), (5, 5), (6, 7), (7, 6), (8, 8), (13, 13), (14, 14),
                                 (55, 55), (56, 56), (111, 111), (112, 112)])
def test_maxpool_ceil_mode(h, w):
    rng = np.random.default_rng(h * 1000 + w)
    x = rand_input(rng, (1, 2, h, w))
    got = golden.maxpool(x)
    assert_same(got[0], ref_maxpool(x[0].tolist()), f"max-pool {h}x{w}")
    torch = pytest.importorskip("torch")
    want = torch.nn.functional.max_pool2d(torch.from_numpy(x.astype(np.float32)), 3, 2,
                                          ceil_mode=True).numpy()
    assert_same(got[0], want[0].astype(np.int64), f"max-pool {h}x{w} vs torch")


@pytest.mark.parametrize("signed_b", [False, True])
@pytest.mark.parametrize("kind", ["random", "zeros", "max", "min"])
def test_bypass_add(signed_b, kind):
    rng = np.random.default_rng(int(signed_b) * 10 + len(kind))
    a = rand_input(rng, (1, 4, 5, 5), kind=kind)
    b = rand_input(rng, (1, 4, 5, 5), signed=signed_b, kind="random" if kind == "zeros" else kind)
    for mult_a, mult_b, shift in [(65535, 65535, 16), (40000, 123, 17), (1, 1, 1), (32768, 65535, 24),
                                  (65535, 1, 8)]:
        q = QAdd("add", mult_a, mult_b, shift)
        assert_same(golden.bypass_add(a, b, q)[0], ref_add(a[0].tolist(), b[0].tolist(), q),
                    f"bypass add mult_a={mult_a} mult_b={mult_b} shift={shift}")


def test_head_sums_and_ties():
    rng = np.random.default_rng(3)
    q = rand_conv(rng, "head", 4, 6, 1, 1, 0)
    x = rand_input(rng, (3, 4, 5, 5))
    fmap, logits, cls = golden.head(x, QHead("head", q))
    for n in range(3):
        rf, rl, rc = ref_head(x[n].tolist(), QHead("head", q))
        assert_same(fmap[n], rf, f"head map, image {n}")
        assert_same(logits[n], rl, f"head logits, image {n}")
        assert int(cls[n]) == rc
    # A tie: zero weights, channels 2 and 4 share the largest bias -> class 2 (lowest index).
    q0 = rand_conv(rng, "head", 4, 6, 1, 1, 0)
    q0.weight[:] = 0
    q0.bias[:] = 1000
    q0.bias[[2, 4]] = 2000
    q0.mult[:], q0.shift[:] = 1, 4          # 1000/16 -> 63, 2000/16 -> 125: no saturation
    _, logits, cls = golden.head(x, QHead("head", q0))
    assert np.all(logits[:, 2] == logits[:, 4]) and np.all(cls == 2)
    assert ref_head(x[0].tolist(), QHead("head", q0))[2] == 2


# ---------------------------------------------------------------------------------------------
# Whole models
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed,conv1,size,w_bits", [
    (0, (3, 2, 0), 17, 8),
    (1, (3, 2, 0), 18, 8),
    (2, (7, 2, 0), 23, 8),
    (3, (7, 2, 3), 20, 4),
    (4, (3, 1, 1), 9, 2),
])
@pytest.mark.parametrize("kind", ["random", "zeros", "max"])
def test_whole_model_end_to_end(seed, conv1, size, w_bits, kind):
    rng = np.random.default_rng(seed)
    k, s, p = conv1
    model = tiny_model(rng, conv1_kernel=k, conv1_stride=s, conv1_pad=p, size=size, w_bits=w_bits)
    # Keep activations alive: shifts that neither saturate everything nor zero everything.
    for c in model.convs():
        c.mult[:] = rng.integers(2 ** 15, 2 ** 16, size=c.out_ch)
        c.shift[:] = max(1, int(np.ceil(np.log2(max(1, abs(c.acc_range()[1]))))) - 7 + 16)
    x = rand_input(rng, (2, 3, size, size), kind=kind)
    res = golden.run(model, x, trace=True)
    for n in range(2):
        logits, best, trace = ref_run(model, x[n])
        for name, want in trace.items():
            assert_same(res.layers[name][n], want, f"model seed {seed}, layer {name}, image {n}")
        assert_same(res.logits[n], logits, f"model seed {seed}, logits, image {n}")
        assert int(res.classes[n]) == best, f"model seed {seed}, image {n}: class"
