"""The golden model: integer-only NumPy inference that *defines* squeezehw's arithmetic.

Every function here is the executable form of docs/numerics.md.  Activations are integers
(uint8 after ReLU, int8 without); accumulation is exact.  For speed the dot products run through
BLAS in floating point, which is exact because every partial sum is an integer whose magnitude is
bounded (from the actual weights) below 2**24 (float32) or 2**53 (float64); the bound is checked,
not assumed.  Arrays are (N, C, H, W).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .intmodel import IntModel, QAdd, QConv, QFire, QHead, QMaxPool

__all__ = ["requantize", "conv_acc", "conv", "maxpool", "bypass_add", "head", "run", "GoldenResult"]


def requantize(acc, mult, shift, lo: int, hi: int) -> np.ndarray:
    """clamp((acc * mult + 2**(shift-1)) >> shift, lo, hi): round half up, then saturate.

    ``mult``/``shift`` broadcast against ``acc`` (per output channel: shape (C, 1, 1)).
    ``>>`` is an arithmetic (floor) shift, so negative values round half towards +infinity too.
    """
    acc = np.asarray(acc, dtype=np.int64)
    mult = np.asarray(mult, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    y = (acc * mult + (np.int64(1) << (shift - 1))) >> shift
    return np.clip(y, lo, hi)


def _exact_dtype(bound: int):
    if bound < 2 ** 24:
        return np.float32
    if bound < 2 ** 53:
        return np.float64
    raise OverflowError(f"accumulator bound {bound} exceeds what the golden model can sum exactly")


def conv_acc(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, stride: int, padding: int,
             in_max: int = 255) -> np.ndarray:
    """Exact integer accumulators sum(w * x) + bias, int64 (N, O, Ho, Wo); zero padding."""
    x = np.asarray(x)
    n, c, h, w = x.shape
    o, ci, k, _ = weight.shape
    if ci != c:
        raise ValueError(f"conv expects {ci} input channels, got {c}")
    bound = int(np.abs(weight.reshape(o, -1).astype(np.int64)).sum(1).max()) * in_max
    dt = _exact_dtype(bound)
    xf = x.astype(dt)
    if padding:
        xf = np.pad(xf, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    if k == 1:
        xs = xf[:, :, ::stride, ::stride]
        ho, wo = xs.shape[2:]
        y = np.einsum("oc,nchw->nohw", weight.reshape(o, c).astype(dt), xs, optimize=True)
    else:
        win = sliding_window_view(xf, (k, k), axis=(2, 3))[:, :, ::stride, ::stride]  # N C Ho Wo k k
        ho, wo = win.shape[2:4]
        cols = win.transpose(0, 2, 3, 1, 4, 5).reshape(n * ho * wo, c * k * k)
        y = (cols @ weight.reshape(o, -1).astype(dt).T).reshape(n, ho, wo, o).transpose(0, 3, 1, 2)
    return np.rint(y).astype(np.int64) + bias.astype(np.int64)[None, :, None, None]


def conv(x: np.ndarray, q: QConv) -> np.ndarray:
    """A quantised conv: uint8 out with ReLU, int8 out without."""
    acc = conv_acc(x, q.weight, q.bias, q.stride, q.padding, in_max=128 if q.in_signed else 255)
    lo, hi = q.out_range
    y = requantize(acc, q.mult[None, :, None, None], q.shift[None, :, None, None], lo, hi)
    return y.astype(np.uint8 if q.relu else np.int8)


def maxpool(x: np.ndarray, kernel: int = 3, stride: int = 2) -> np.ndarray:
    """Max over KxK windows with stride S, ceil_mode=True: windows may hang over the bottom/right
    edge and then cover only the pixels inside (inputs are >= 0, so padding with 0 is the same)."""
    from ..frontend.ir import pool_out_size
    n, c, h, w = x.shape
    ho, wo = pool_out_size(h, kernel, stride), pool_out_size(w, kernel, stride)
    ph, pw = (ho - 1) * stride + kernel - h, (wo - 1) * stride + kernel - w
    xp = np.pad(x, ((0, 0), (0, 0), (0, max(ph, 0)), (0, max(pw, 0))))
    # Max of the K*K strided shifts of the map: the same maxima as reducing each window, ~10x
    # faster than a reduction over a sliding_window_view (speed only; the arithmetic is a max).
    out = None
    for ky in range(kernel):
        for kx in range(kernel):
            tap = xp[:, :, ky:ky + stride * (ho - 1) + 1:stride, kx:kx + stride * (wo - 1) + 1:stride]
            out = tap.copy() if out is None else np.maximum(out, tap, out=out)
    return out.astype(x.dtype, copy=False)


def bypass_add(a: np.ndarray, b: np.ndarray, q: QAdd) -> np.ndarray:
    """clamp((a*mult_a + b*mult_b + 2**(shift-1)) >> shift, 0, 255), uint8."""
    s = a.astype(np.int64) * q.mult_a + b.astype(np.int64) * q.mult_b
    return np.clip((s + (1 << (q.shift - 1))) >> q.shift, 0, 255).astype(np.uint8)


def head(x: np.ndarray, q: QHead) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Final conv (+ReLU, uint8), then per-class sums over every pixel (the global average pool
    without its division: 1/(H*W) is folded into the logits' scale), then argmax (lowest index
    wins a tie).  Returns (feature map, logits int64 (N, classes), class int64 (N,))."""
    fmap = conv(x, q.conv)
    logits = fmap.astype(np.int64).sum(axis=(2, 3))
    return fmap, logits, np.argmax(logits, axis=1)


@dataclass
class GoldenResult:
    logits: np.ndarray                 # int64 (N, classes): per-class sums of the head's outputs
    classes: np.ndarray                # int64 (N,)
    layers: dict = field(default_factory=dict)   # name -> int array (N, C, H, W), if traced

    def logits_float(self, model: IntModel) -> np.ndarray:
        """Logits in real units (the float model's average-pooled scores)."""
        return self.logits * (model.head.conv.out_scale / model.head_pixels())


def run(model: IntModel, images: np.ndarray, trace: bool = False) -> GoldenResult:
    """Run the integer model on uint8 images (N, C, H, W) or (C, H, W).

    With ``trace=True`` every intermediate tensor is kept in ``layers`` under its layer name;
    Fire modules add ``NAME.squeeze``, ``NAME.expand1x1``, ``NAME.expand3x3``, ``NAME.concat``
    and, with bypass, ``NAME.bypass`` (complex bypass conv output); ``NAME`` is the Fire output.
    """
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[None]
    if x.dtype != np.uint8:
        raise TypeError(f"images must be uint8 (raw pixels), got {x.dtype}")
    if x.shape[1:] != (model.in_ch, model.height, model.width):
        raise ValueError(f"images have shape {x.shape[1:]}, the model expects "
                         f"{(model.in_ch, model.height, model.width)}")
    layers = {}

    def keep(name, t):
        if trace:
            layers[name] = t

    for layer in model.layers:
        if isinstance(layer, QConv):
            x = conv(x, layer)
        elif isinstance(layer, QMaxPool):
            x = maxpool(x, layer.kernel, layer.stride)
        elif isinstance(layer, QFire):
            s = conv(x, layer.squeeze)
            e1 = conv(s, layer.expand1x1)
            e3 = conv(s, layer.expand3x3)
            y = np.concatenate([e1, e3], axis=1)
            keep(f"{layer.name}.squeeze", s)
            keep(f"{layer.name}.expand1x1", e1)
            keep(f"{layer.name}.expand3x3", e3)
            if layer.bypass is not None:
                keep(f"{layer.name}.concat", y)
                b = x if layer.bypass.conv is None else conv(x, layer.bypass.conv)
                if layer.bypass.conv is not None:
                    keep(f"{layer.name}.bypass", b)
                y = bypass_add(y, b, layer.bypass)
            x = y
        elif isinstance(layer, QHead):
            fmap, logits, cls = head(x, layer)
            keep(f"{layer.name}", fmap)
            return GoldenResult(logits, cls, layers)
        keep(layer.name, x)
    raise ValueError("model has no head layer")
