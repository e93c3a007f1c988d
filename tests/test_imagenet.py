"""Real ImageNet SqueezeNets on real photographs (skipped without ../shared/data/imagenet).

Calibration photos (every 50th of the 1000, 20 photos) are disjoint from the evaluation photos
(the first 100 others).  One photo per class and 100 photos: the standard error of a top-1
figure is about 5 points, so the bounds below are loose; benchmarks/imagenet_accuracy.py
measures all 1000.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "imagenet"
pytestmark = pytest.mark.skipif(not (DATA / "sample").is_dir(),
                                reason=f"ImageNet sample data not found at {DATA}")


@pytest.fixture(scope="module")
def photos():
    from squeezehw.frontend.images import list_image_folder, load_images
    files, labels, classes = list_image_folder(DATA / "sample")
    assert len(classes) == 1000 and len(files) == 1000
    calib = list(range(0, 1000, 50))
    evals = [i for i in range(120) if i not in calib][:100]
    load = lambda idx: load_images([files[i] for i in idx], height=224, width=224, channels=3,
                                   resize=256, progress=False)[0]
    return load(calib), load(evals), labels[evals]


@pytest.fixture(scope="module")
def v11():
    from squeezehw.frontend.importer import load_network
    return load_network("squeezenet1_1", DATA / "squeezenet1_1.npz")


def test_squeezenet1_1_int8_tracks_float(photos, v11):
    from squeezehw.plan.memory import memory_report
    from squeezehw.quant.evaluate import evaluate
    from squeezehw.quant.quantize import quantize
    calib, x, y = photos
    m = quantize(v11, calib, progress=False)
    assert memory_report(m)["weight_bytes"] == 1_231_552          # one byte per weight
    r = evaluate(m, x, y, progress=False)
    print(r)
    assert r["float"]["top1"] >= 0.5, f"float accuracy {r['float']} implausible: preprocessing broken?"
    assert r["quantized"]["top1"] >= r["float"]["top1"] - 0.04, r
    assert r["quantized"]["top5"] >= r["float"]["top5"] - 0.04, r
    assert r["agreement"] >= 0.88, r


def test_squeezenet1_1_4bit_is_smaller(photos, v11):
    from squeezehw.plan.memory import memory_report
    from squeezehw.quant.quantize import quantize
    m4 = quantize(v11, photos[0][:4], w_bits=4, progress=False)
    assert memory_report(m4)["weight_bytes"] == 1_231_552 // 2


def test_deep_compression_v1_0_quantizes(photos):
    from squeezehw.frontend.importer import load_network
    from squeezehw.quant.evaluate import evaluate
    from squeezehw.quant.quantize import quantize
    calib, x, y = photos
    net = load_network("squeezenet1_0", DATA / "squeezenet1_0_deep_compression.npz")
    m = quantize(net, calib, progress=False)
    # pruned weights stay exactly zero after quantisation
    for c in m.convs():
        pruned = net.weights[c.name][0] == 0
        assert pruned.any() and np.all(c.weight[pruned] == 0), c.name
    r = evaluate(m, x[:30], y[:30], progress=False)
    print(r)
    assert r["agreement"] >= 0.8, r
