"""calibration='search': per tensor the candidate range whose fake-quantised network's logits stay
closest to the float model's, chosen greedily in network order (squeezehw/quant/search_calibration.py)."""
from __future__ import annotations

import numpy as np
import pytest

from test_quantize import random_images, random_network

from squeezehw.frontend.ir import Conv, Head, Network
from squeezehw.quant import golden
from squeezehw.quant.quantize import QuantizeError, calibration_ranges, quantize
from squeezehw.quant.search_calibration import candidate_ranges, quant_points, search_ranges


def _base(net, x):
    return {c: calibration_ranges(net, x, calibration=c, progress=False) for c in ("mse", "percentile", "max")}


def test_search_ranges_are_candidates_and_deterministic():
    """Every searched tensor gets one of its candidates (a Fire's expand pair one shared range), the
    head stays unclipped, two runs agree exactly, and quantize records each tensor's choice."""
    net = random_network()
    x = random_images(12, net)
    base = _base(net, x)
    log = []
    ranges = search_ranges(net, x, base=base, progress=False, log=log)
    assert ranges == search_ranges(net, x, base=base, progress=False)
    pts = quant_points(net)
    head = pts[-1][0]
    assert ranges[head] == base["max"][head]
    assert [e["point"] for e in log] == [p for p, _, _ in pts if p != head]
    for p, keys, _ in pts[:-1]:
        cands = candidate_ranges(*(max(base[c][k] for k in keys) for c in ("mse", "percentile", "max")))
        assert len({ranges[k] for k in keys}) == 1
        assert ranges[keys[0]] in [r for _, r in cands], p
    assert {e["chosen"] for e in log} - {"mse", "percentile", "max", "mse x0.8", "mse x0.9", "mse x1.1",
                                         "mse x1.25"} == set()
    m = quantize(net, x, calibration="search", progress=False)
    assert m.info["calibration"]["method"] == "search"
    assert m.info["calibration"]["search"] == {e["point"]: e["chosen"] for e in log}
    assert m.layers[0].out_scale == pytest.approx(ranges[net.layers[0].name] / 255)
    golden.run(m, x[:2])                                  # a valid integer model


def test_candidates_are_deduplicated_and_clipped_to_max():
    c = candidate_ranges(2.0, 1.6, 2.4)
    assert [label for label, _ in c] == ["mse", "percentile", "max", "mse x0.9", "mse x1.1"]
    assert max(r for _, r in c) == 2.4                    # mse x1.1 = 2.2; x1.25 = 2.5 -> max, dropped


def _toy(reads_large: bool):
    """conv1 (1x1) makes a small channel (the pixel) and a large one (5 x the pixel); the head reads
    only the large channel (``reads_large``) or only the small one.  Pixels are mostly dark with a
    few bright ones, so an error-minimising range clips the large channel's rare top values."""
    net = Network("toy", 1, 4, 4, (Conv("c1", 1, 2), Head("head", 2, 3)))
    w1 = np.array([1.0, 5.0], np.float32).reshape(2, 1, 1, 1)
    rng = np.random.default_rng(7)
    wh = np.zeros((3, 2, 1, 1), np.float32)
    wh[:, 1 if reads_large else 0, 0, 0] = rng.normal(0, 30, 3) / (5.0 if reads_large else 1.0)
    net = net.with_weights({"c1": (w1, np.zeros(2, np.float32)), "head": (wh, np.full(3, 0.5, np.float32))})
    dark = rng.integers(0, 30, size=(32, 1, 4, 4))
    bright = rng.random((32, 1, 4, 4)) < 0.005
    x = np.where(bright, rng.integers(200, 256, size=dark.shape), dark).astype(np.uint8)
    return net, x


def _toy_kl(net, x, r):
    """KL (millinats) of the toy's logits with c1 fake-quantised at range r, computed in NumPy."""
    w1, b1 = (np.asarray(a, np.float64) for a in net.weights["c1"])
    wh, bh = (np.asarray(a, np.float64) for a in net.weights["head"])

    def logits(q):
        y = np.maximum(np.einsum("oi,nihw->nohw", w1[:, :, 0, 0], x / 255.0) + b1[None, :, None, None], 0)
        if q:
            y = np.clip(np.rint(y / (r / 255)), 0, 255) * (r / 255)
        h = np.maximum(np.einsum("oi,nihw->nohw", wh[:, :, 0, 0], y) + bh[None, :, None, None], 0)
        z = h.mean(axis=(2, 3))
        z = z - z.max(1, keepdims=True)
        return z - np.log(np.exp(z).sum(1, keepdims=True))
    p, q = logits(False), logits(True)
    return float(1000 * (np.exp(p) * (p - q)).sum(1).mean())


@pytest.mark.parametrize("reads_large", [False, True])
def test_search_picks_the_range_the_output_needs(reads_large):
    """The chosen conv1 range is the candidate with the smallest output KL computed independently
    (NumPy); when the head reads the small channel that is the smallest candidate (clipping the
    large channel is free, the small one wants a fine grid); when it reads the large channel it
    clips no more than mse does, and the smallest candidate costs far more."""
    net, x = _toy(reads_large)
    base = _base(net, x)
    log = []
    ranges = search_ranges(net, x, base=base, progress=False, log=log)
    cands = candidate_ranges(base["mse"]["c1"], base["percentile"]["c1"], base["max"]["c1"])
    kl = [_toy_kl(net, x, r) for _, r in cands]
    assert ranges["c1"] == cands[int(np.argmin(kl))][1]
    smallest = min(r for _, r in cands)
    if reads_large:
        assert ranges["c1"] >= base["mse"]["c1"] and min(kl) * 10 < kl[[r for _, r in cands].index(smallest)]
    else:
        assert ranges["c1"] == smallest < base["percentile"]["c1"]
    assert ranges["head"] == base["max"]["head"]
    assert log[0]["kl_mnat"] == pytest.approx(dict(zip([lab for lab, _ in cands], kl)), rel=1e-3, abs=1e-4)


def test_search_refuses_bad_input():
    net = random_network()
    x = random_images(2, net)
    with pytest.raises(QuantizeError, match="calibration must be one of .*'search'"):
        quantize(net, x, calibration="serach", progress=False)
    with pytest.raises(QuantizeError, match=r"base\['max'\]"):
        search_ranges(net, x, base={"mse": {}, "percentile": {}}, progress=False)
    with pytest.raises(QuantizeError, match="scales must be positive"):
        search_ranges(net, x, base=_base(net, x), scales=(0.0,), progress=False)


def test_fake_quant_logits_matches_numpy_and_float():
    """fake_quant_logits with nothing quantised is the float model; with the toy's conv1 quantised
    at range r it gives the NumPy-computed logits (log-softmax compared, KL to float as in _toy_kl)."""
    from squeezehw.frontend.float_model import forward
    from squeezehw.quant.search_calibration import fake_quant_logits, kl_mnat, log_softmax
    net, x = _toy(True)
    ref = forward(net, x, batch_size=25)[0]
    assert np.allclose(fake_quant_logits(net, x, {}, set()), ref, atol=1e-5)
    r = 40.0
    z = fake_quant_logits(net, x, {"c1": r, "head": 1.0}, {"c1"})
    assert kl_mnat(log_softmax(ref), z) == pytest.approx(_toy_kl(net, x, r), rel=1e-3, abs=1e-4)
    assert _toy_kl(net, x, r) > 1e-3          # the clip at 40 changes the logits: the check can fail
