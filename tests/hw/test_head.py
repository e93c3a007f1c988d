"""Head (MVU + GlobalSumArgmax) against golden.head on small random models, frames back to back."""
from __future__ import annotations

import numpy as np
import pytest
from amaranth.back import verilog
from squeezehw.sim.streamsim import Traffic, pack_lanes, simulate

from squeezehw.errors import UserError
from squeezehw.hw.errors import FoldingError
from squeezehw.hw.head import Head
from squeezehw.quant import golden
from squeezehw.quant.intmodel import QConv, QHead

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


def make_head(rng, in_ch, classes, relu=True):
    w = rng.integers(-127, 128, (classes, in_ch, 1, 1))
    b = rng.integers(-3000, 3000, classes)
    spread = int(np.abs(w).sum((1, 2, 3)).max()) * 255 // 8
    shift = np.full(classes, 16 - 8 + spread.bit_length())
    mult = rng.integers(1 << 15, 1 << 16, classes)
    conv = QConv(name="conv10", in_ch=in_ch, out_ch=classes, kernel=1, stride=1, padding=0,
                 relu=relu, weight=w.astype(np.int64), bias=b.astype(np.int64),
                 mult=mult.astype(np.int64), shift=shift.astype(np.int64))
    return QHead("head", conv)


def frame_beats(img, simd):
    c, h, w = img.shape
    return [pack_lanes(img[j * simd:(j + 1) * simd, y, x])
            for y in range(h) for x in range(w) for j in range(c // simd)]


@pytest.mark.parametrize("simd,pe,seed", [(4, 2, 1), (16, 10, 2), (1, 5, 3), (8, 1, 4)])
def test_head_vs_golden(simd, pe, seed):
    rng = np.random.default_rng(seed)
    C, K, H, frames = 16, 10, 4, 3
    q = make_head(rng, C, K)
    imgs = rng.integers(0, 256, (frames, C, H, H)).astype(np.uint8)
    fmap, logits, classes = golden.head(imgs, q)
    assert len(set(fmap.reshape(-1).tolist())) > 20, "test model saturates; pick other scales"
    dut = Head(qhead=q, pixels=H * H, simd=simd, pe=pe)
    beats = [b for img in imgs for b in frame_beats(img, simd)]
    r = simulate(dut, {"i": beats}, {"o": frames * (K + 1)}, traffic=Traffic.rough(seed),
                 extra_cycles=30)
    got = r["o"]
    for n in range(frames):
        out = got[n * (K + 1):(n + 1) * (K + 1)]
        for k in range(K):
            assert out[k] == logits[n, k], f"frame {n} class {k}: logit {out[k]} != {logits[n, k]}"
        assert out[K] == classes[n], f"frame {n}: class {out[K]} != {classes[n]}"
    assert dut.cycles_per_frame == H * H * (C // simd) * (K // pe)


def test_head_validation():
    rng = np.random.default_rng(0)
    with pytest.raises(FoldingError, match="PE=3 does not divide 10"):
        Head(qhead=make_head(rng, 16, 10), pixels=4, simd=4, pe=3)
    with pytest.raises(UserError, match="must have ReLU"):
        Head(qhead=make_head(rng, 16, 10, relu=False), pixels=4, simd=4, pe=2)
    with pytest.raises(UserError, match="pixels must be a positive integer"):
        Head(qhead=make_head(rng, 16, 10), pixels=0, simd=4, pe=2)


def test_head_verilog_deterministic():
    q = make_head(np.random.default_rng(1), 8, 4)
    texts = [verilog.convert(Head(qhead=q, pixels=9, simd=4, pe=2), name="head", emit_src=False)
             for _ in range(2)]
    assert texts[0] == texts[1]
