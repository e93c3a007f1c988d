"""Float vs integer accuracy of an integer model on labelled images.

The float side is the network the model was quantised from, rebuilt from the integer model's
structure and the float weights it carries (``IntModel.float_weights``); the integer side is the
golden model.  Classes are ranked by logit, ties to the lower class index (the hardware's argmax
rule), for both.
"""
from __future__ import annotations

import sys

import numpy as np

from ..errors import UserError
from ..frontend.ir import Conv, Fire, Head, MaxPool, Network
from .intmodel import IntModel, QConv, QFire, QHead, QMaxPool

__all__ = ["float_network_of", "evaluate", "topk_correct", "ranking"]


def float_network_of(model: IntModel) -> Network:
    """The float ``ir.Network`` the integer model was quantised from (needs ``float_weights``)."""
    if not model.float_weights:
        raise UserError(f"{model.name}: the integer model carries no float weights, so its float "
                        "accuracy cannot be computed; re-quantize it with this squeezehw version")

    def conv(q: QConv) -> Conv:
        return Conv(q.name, q.in_ch, q.out_ch, q.kernel, q.stride, q.padding, q.relu)
    layers = []
    for l in model.layers:
        if isinstance(l, QConv):
            layers.append(conv(l))
        elif isinstance(l, QMaxPool):
            layers.append(MaxPool(l.name, l.kernel, l.stride))
        elif isinstance(l, QFire):
            mode = "none" if l.bypass is None else ("simple" if l.bypass.conv is None else "complex")
            layers.append(Fire(l.name, l.squeeze.in_ch, l.squeeze.out_ch, l.expand1x1.out_ch,
                               l.expand3x3.out_ch, mode))
        elif isinstance(l, QHead):
            layers.append(Head(l.name, l.conv.in_ch, l.conv.out_ch))
        else:
            raise UserError(f"{l.name}: unknown layer type {type(l).__name__}")
    return Network(model.name, model.in_ch, model.height, model.width, tuple(layers),
                   weights=dict(model.float_weights), mean=tuple(model.mean), std=tuple(model.std),
                   resize=model.resize, labels=model.labels)


def ranking(logits: np.ndarray, k: int) -> np.ndarray:
    """Top-k class indices per row, best first; equal logits rank the lower index first."""
    return np.argsort(-np.asarray(logits), axis=1, kind="stable")[:, :k]


def topk_correct(logits: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    return (ranking(logits, k) == np.asarray(labels)[:, None]).any(axis=1)


def evaluate(model: IntModel, images: np.ndarray, labels: np.ndarray, *, batch_size: int = 32,
             with_float: bool = True, progress: bool = True) -> dict:
    """``{"images", "float": {"top1", "top5"} or None, "quantized": {"top1", "top5"},
    "agreement"}`` (agreement: fraction of images where float and integer top-1 agree)."""
    from tqdm import tqdm

    from . import golden
    images = np.asarray(images)
    labels = np.asarray(labels, np.int64)
    if images.dtype != np.uint8 or images.ndim != 4:
        raise UserError(f"images must be uint8 (N, C, H, W), got {images.dtype} {images.shape}")
    if len(images) != len(labels) or len(images) == 0:
        raise UserError(f"need the same, non-zero number of images and labels ({len(images)} vs "
                        f"{len(labels)})")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise UserError(f"batch_size must be a positive integer, got {batch_size!r}")
    if labels.min() < 0 or labels.max() >= model.classes:
        raise UserError(f"labels must lie in 0..{model.classes - 1} for {model.name}, found "
                        f"{labels.min()}..{labels.max()}; is this the right image folder?")
    k5 = min(5, model.classes)
    net = float_network_of(model) if with_float else None
    qlog, flog = [], []
    for start in tqdm(range(0, len(images), batch_size), desc="evaluating", unit="batch",
                      disable=None if progress else True, file=sys.stderr):
        x = images[start:start + batch_size]
        qlog.append(golden.run(model, x).logits)
        if net is not None:
            from ..frontend.float_model import forward
            flog.append(forward(net, x, batch_size=batch_size)[0])
    qlog = np.concatenate(qlog)

    def acc(lg):
        return {"top1": float(topk_correct(lg, labels, 1).mean()),
                "top5": float(topk_correct(lg, labels, k5).mean())}
    out = {"images": int(len(images)), "float": None, "quantized": acc(qlog), "agreement": None}
    if net is not None:
        flog = np.concatenate(flog)
        out["float"] = acc(flog)
        out["agreement"] = float((ranking(flog, 1) == ranking(qlog, 1)).mean())
    return out
