"""``calibration='search'``: per activation tensor, the candidate range that keeps the network's
*output* closest to the float model's, chosen greedily in network order (docs/quantization.md).

Label-free: only the calibration images and the float model's own logits on them are used.

* Quantisation points are the tensors the quantizer puts on an 8-bit grid, in network order; a
  Fire's two expand convs are one point (they share one scale, so they are decided together).
* Candidates per point (deduplicated, in this order, so a tie keeps the earlier one): the mse
  range (``quantize.mse_range``, the tensor's own error optimum), the percentile range, the
  largest value, and the mse range times 0.8, 0.9, 1.1 and 1.25, clipped to the largest value.
  mse and percentile are the two rules measured best on whole networks; the scaled ranges fill
  the gap between them (the percentile range is typically 0.7-0.9 of the mse range) and go a
  little above it, where a tensor's clipping matters more downstream than its own error says.
* Objective: mean KL(softmax(float logits) || softmax(fake-quant logits)) over the calibration
  images, with the points already decided at their chosen ranges, the point under test at the
  candidate, and every later point in float.  Fake quantisation rounds and clips a float32 tensor
  onto the grid the integer model gives it (``range/255`` after ReLU, ``range/127`` for a
  complex-bypass conv); weights stay float, so the search does not depend on the weight format.
* The head is not searched: it stays at its largest value (unclipped), as in 'mse' -- a logit is
  the mean of H x W head pixels, so rounding errors average out while clipping cuts exactly the
  largest values that the argmax compares.
* The input of the layer holding the point under test is cached (earlier points at their chosen
  ranges), so each candidate only reruns the network from that layer on.
"""
from __future__ import annotations

import sys

import numpy as np

from ..frontend.ir import Conv, Fire, Head, MaxPool, Network

__all__ = ["quant_points", "search_ranges", "fake_quant_logits", "log_softmax", "kl_mnat", "SEARCH_SCALES"]

SEARCH_SCALES = (0.8, 0.9, 1.1, 1.25)      # multiples of the mse range tried besides mse, percentile, max


def quant_points(net: Network) -> list[tuple[str, tuple[str, ...], int]]:
    """[(point name, ranges keys, levels)] in network order: the tensors the quantizer puts on an
    8-bit grid; a Fire's two expand convs are one point ``FIRE.expand`` (one shared scale)."""
    pts = []
    for layer in net.layers:
        if isinstance(layer, Conv):
            pts.append((layer.name, (layer.name,), 255))
        elif isinstance(layer, Fire):
            sq, e1, e3, *byp = layer.convs
            pts.append((sq.name, (sq.name,), 255))
            pts.append((f"{layer.name}.expand", (e1.name, e3.name), 255))
            if byp:
                pts.append((byp[0].name, (byp[0].name,), 127))
            if layer.bypass != "none":
                pts.append((f"{layer.name}.add", (layer.name,), 255))
        elif isinstance(layer, Head):
            pts.append((layer.name, (layer.name,), 255))
    return pts


class _FakeQuant:
    """The float network, batched in torch, with chosen points rounded and clipped onto their grid."""

    def __init__(self, net: Network, batch_size: int):
        import torch
        self.net, self.batch_size = net, batch_size
        self.w = {n: (torch.from_numpy(np.ascontiguousarray(a, np.float32)),
                      torch.from_numpy(np.ascontiguousarray(b, np.float32)))
                  for n, (a, b) in net.weights.items()}
        self.levels = {p: lv for p, _, lv in quant_points(net)}

    def _q(self, t, point, ranges):
        import torch
        r = ranges.get(point)
        if r is None:                               # not (yet) quantised: float
            return t
        lv = self.levels[point]
        s = (r if r > 0 else 1.0) / lv
        return torch.clamp(torch.round(t / s), 0 if lv == 255 else -128, lv) * s

    def _conv(self, t, c):
        import torch.nn.functional as F
        y = F.conv2d(t, *self.w[c.name], stride=c.stride, padding=c.padding)
        return F.relu(y) if c.relu else y

    def layer(self, x, layer, ranges):
        """One layer's output; ``ranges``: {point: range} of the quantised points."""
        import torch
        import torch.nn.functional as F
        q = self._q
        if isinstance(layer, Conv):
            return q(self._conv(x, layer), layer.name, ranges)
        if isinstance(layer, MaxPool):
            return F.max_pool2d(x, layer.kernel, layer.stride, ceil_mode=True)
        if isinstance(layer, Fire):
            sq, e1, e3, *byp = layer.convs
            s = q(self._conv(x, sq), sq.name, ranges)
            y = q(torch.cat([self._conv(s, e1), self._conv(s, e3)], 1), f"{layer.name}.expand", ranges)
            if layer.bypass != "none":
                b = x if not byp else q(self._conv(x, byp[0]), byp[0].name, ranges)
                y = q(F.relu(y + b), f"{layer.name}.add", ranges)
            return y
        if isinstance(layer, Head):
            return q(self._conv(x, layer.conv), layer.name, ranges).mean(dim=(2, 3))
        raise ValueError(f"{layer.name}: cannot fake-quantise {type(layer).__name__}")

    def inputs(self, pixels):
        """The normalised input, as a list of batches."""
        import torch

        from ..frontend.float_model import _normalize_t
        return [_normalize_t(self.net, torch.from_numpy(np.ascontiguousarray(pixels[s:s + self.batch_size])))
                for s in range(0, len(pixels), self.batch_size)]

    def run(self, xs, start: int, ranges, stop: int | None = None):
        """Layers ``start`` .. ``stop - 1`` (default: to the logits) on each batch of ``xs``."""
        import torch
        layers = self.net.layers[start:stop]
        out = []
        with torch.no_grad():
            for x in xs:
                for layer in layers:
                    x = self.layer(x, layer, ranges)
                out.append(x)
        return out


def fake_quant_logits(net: Network, pixels: np.ndarray, ranges: dict[str, float], quantised,
                      batch_size: int = 25) -> np.ndarray:
    """Float logits of ``pixels`` with the points in ``quantised`` (names from :func:`quant_points`)
    rounded and clipped onto their grid; ``ranges``: {trace name: range} as from
    ``calibration_ranges`` (a point's range is the largest of its trace names')."""
    point_ranges = {p: max(ranges[k] for k in keys) for p, keys, _ in quant_points(net) if p in quantised}
    fq = _FakeQuant(net, batch_size)
    return np.concatenate([t.numpy() for t in fq.run(fq.inputs(pixels), 0, point_ranges)])


def log_softmax(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.float64) - z.max(1, keepdims=True)
    return z - np.log(np.exp(z).sum(1, keepdims=True))


def kl_mnat(ref_logp: np.ndarray, logits: np.ndarray) -> float:
    """Mean KL(p_ref || softmax(logits)) in millinats; ``ref_logp`` is log_softmax of the reference."""
    return float(1000 * (np.exp(ref_logp) * (ref_logp - log_softmax(logits))).sum(1).mean())


def candidate_ranges(mse: float, pct: float, top: float, scales=SEARCH_SCALES) -> list[tuple[str, float]]:
    """[(label, range)]: mse, percentile, max, then mse x each scale clipped to max; a range equal
    to an earlier one is dropped (so a tie in the search keeps the earlier label)."""
    cands = [("mse", mse), ("percentile", pct), ("max", top)] + \
            [(f"mse x{s:g}", min(mse * s, top)) for s in scales]
    out, seen = [], set()
    for label, r in cands:
        r = float(r)
        if r > 0 and r not in seen:
            seen.add(r)
            out.append((label, r))
    return out


def search_ranges(net: Network, calib: np.ndarray, *, base: dict[str, dict[str, float]],
                  batch_size: int = 25, progress: bool = True, scales=SEARCH_SCALES,
                  log: list | None = None) -> dict[str, float]:
    """{trace name: range} chosen greedily in network order by the KL of the final logits to the
    float model's on ``calib`` (module docstring).

    ``base``: {'mse': ..., 'percentile': ..., 'max': ...}, each ``calibration_ranges(net, calib,
    calibration=that)``; the result starts from the mse ranges (every trace name, head unclipped)
    and replaces the searched points.  ``log``, when given, receives one dict per point: its
    candidates' KL (millinats) and the chosen label."""
    from tqdm import tqdm
    from .quantize import QuantizeError
    for rule in ("mse", "percentile", "max"):
        if rule not in base:
            raise QuantizeError(f"search_ranges needs base['{rule}'] = calibration_ranges(net, calib, "
                                f"calibration='{rule}')")
    if not all(isinstance(s, (int, float)) and s > 0 for s in scales):
        raise QuantizeError(f"search scales must be positive multiples of the mse range, got {tuple(scales)!r}")
    pts = quant_points(net)
    fq = _FakeQuant(net, batch_size)
    layer_of = {p: i for i, layer in enumerate(net.layers)   # point -> index of its layer
                for p, _, _ in quant_points(_OneLayer(layer))}
    xs = fq.inputs(calib)
    ref_logp = log_softmax(np.concatenate([t.numpy() for t in fq.run(xs, 0, {})]))
    ranges = dict(base["mse"])
    chosen: dict[str, float] = {}                   # point -> range (the decided points)
    head = pts[-1][0] if isinstance(net.layers[-1], Head) else None
    cur_layer, cur_x = 0, xs                        # cur_x: input of layer cur_layer, earlier points decided
    todo = [pt for pt in pts if pt[0] != head]
    bar = tqdm(todo, desc="calibrating (search)", unit="tensor", disable=None if progress else True,
               file=sys.stderr)
    for p, keys, _ in bar:
        i = layer_of[p]
        if i > cur_layer:
            cur_x = fq.run(cur_x, cur_layer, chosen, stop=i)
            cur_layer = i
        mse = max(base["mse"][k] for k in keys)
        pct = max(base["percentile"][k] for k in keys)
        top = max(base["max"][k] for k in keys)
        if not top > 0:                             # never active on the calibration images
            continue
        cands = candidate_ranges(mse, pct, top, scales)
        kls = [kl_mnat(ref_logp, np.concatenate([t.numpy() for t in fq.run(cur_x, i, {**chosen, p: r})]))
               for _, r in cands]
        best = int(np.argmin(kls))                  # first minimum: ties keep the earlier candidate
        chosen[p] = cands[best][1]
        for k in keys:
            ranges[k] = cands[best][1]
        if log is not None:
            log.append({"point": p, "chosen": cands[best][0], "range": cands[best][1],
                        "kl_mnat": {lab: round(v, 4) for (lab, _), v in zip(cands, kls)}})
    if head is not None:
        ranges[head] = base["max"][head]
    return ranges


class _OneLayer:
    """Just enough of a Network for ``quant_points``: one layer."""

    def __init__(self, layer):
        self.layers = [layer]
