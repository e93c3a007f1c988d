"""Empirical bias correction: each conv's integer bias absorbs the mean error that quantisation
upstream (clipped and rounded activations, rounded weights) adds to its output.

Clipping removes only large values and rounding onto a coarse grid is not zero-mean on skewed
(post-ReLU) data, so a quantised conv's pre-activation is *shifted* per output channel, and the
shift grows layer by layer.  Following Nagel et al. 2019 (Data-Free Quantization, empirical bias
correction) and Banner et al. 2019, the shift is measured on the calibration images -- no labels --
and subtracted from the bias: per output channel ``o``,

    bias[o] -= round(mean(acc[o]) - mean(float pre-activation[o]) / (w_scale[o] * in_scale))

where ``acc`` is the integer model's accumulator (bias included) on the calibration images and the
float mean is the float model's on the same images.  Convs are corrected in network order, each
one measured with every earlier correction in place, so a layer also absorbs what its
predecessors' corrections did not.  The arithmetic of the integer model is unchanged: only bias
values move (docs/quantization.md, *Bias correction*).
"""
from __future__ import annotations

import numpy as np

from . import golden
from .intmodel import IntModel, QConv, QFire, QHead, QMaxPool

__all__ = ["float_preactivation_means", "correct_biases"]

INT32_MAX = 2 ** 31 - 1          # |bias| limit, as in quantize


def float_preactivation_means(net, calib: np.ndarray, batch_size: int = 16) -> dict[str, np.ndarray]:
    """{conv name: float64 (out,)}: the float model's mean pre-activation (conv + bias, before
    ReLU) per output channel over all calibration images and pixels."""
    from ..frontend.float_model import forward
    sums: dict[str, np.ndarray] = {}
    count: dict[str, int] = {}

    def gather(c, y):
        sums[c.name] = sums.get(c.name, 0) + y.double().sum(dim=(0, 2, 3)).numpy()
        count[c.name] = count.get(c.name, 0) + y.shape[0] * y.shape[2] * y.shape[3]

    forward(net, calib, batch_size=batch_size, on_conv=gather)
    return {n: sums[n] / count[n] for n in sums}


def _correct(q: QConv, x: np.ndarray, float_mean: np.ndarray, batch: int = 8) -> dict:
    """Move ``q.bias`` so that its mean accumulator on ``x`` matches ``float_mean``; returns the
    shift in output steps per channel (for the report)."""
    total = np.zeros(q.out_ch, np.float64)
    n = 0
    for s in range(0, len(x), batch):
        acc = golden.conv_acc(x[s:s + batch], q.weight, q.bias, q.stride, q.padding,
                              in_max=128 if q.in_signed else 255)
        total += acc.sum(axis=(0, 2, 3), dtype=np.float64)
        n += acc.shape[0] * acc.shape[2] * acc.shape[3]
    step = q.w_scale * q.in_scale                      # real value of one accumulator step
    delta = np.rint(total / n - float_mean / step)
    new = q.bias - delta.astype(np.int64)
    bad = np.flatnonzero(np.abs(new) > INT32_MAX)
    if len(bad):
        from .quantize import QuantizeError
        raise QuantizeError(f"{q.name}: bias correction moves output channel {int(bad[0])}'s bias outside "
                            "int32; quantize without bias correction or with more weight bits")
    q.bias = new
    return {"mean_shift_out_steps": float(np.abs(delta * step / q.out_scale).mean())}


def correct_biases(model: IntModel, net, calib: np.ndarray, batch_size: int = 16) -> dict:
    """Correct every conv's bias of ``model`` (quantised from ``net``) in place, in network order,
    on the uint8 calibration images ``calib``.  Returns {conv name: report}."""
    fmean = float_preactivation_means(net, calib, batch_size)
    report = {}
    x = np.asarray(calib)
    for layer in model.layers:
        if isinstance(layer, QConv):
            report[layer.name] = _correct(layer, x, fmean[layer.name])
            x = golden.conv(x, layer)
        elif isinstance(layer, QMaxPool):
            x = golden.maxpool(x, layer.kernel, layer.stride)
        elif isinstance(layer, QFire):
            report[layer.squeeze.name] = _correct(layer.squeeze, x, fmean[layer.squeeze.name])
            s = golden.conv(x, layer.squeeze)
            for e in (layer.expand1x1, layer.expand3x3):
                report[e.name] = _correct(e, s, fmean[e.name])
            y = np.concatenate([golden.conv(s, layer.expand1x1), golden.conv(s, layer.expand3x3)], axis=1)
            if layer.bypass is not None:
                b = x
                if layer.bypass.conv is not None:
                    report[layer.bypass.conv.name] = _correct(layer.bypass.conv, x, fmean[layer.bypass.conv.name])
                    b = golden.conv(x, layer.bypass.conv)
                y = golden.bypass_add(y, b, layer.bypass)
            x = y
        elif isinstance(layer, QHead):
            report[layer.conv.name] = _correct(layer.conv, x, fmean[layer.conv.name])
    return report
