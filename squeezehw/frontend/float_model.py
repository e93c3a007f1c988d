"""Float32 inference of the network IR: the reference the quantizer calibrates from and is judged by.

``forward`` runs the IR's float weights with ``torch.nn.functional`` on raw uint8 pixels, applying the
network's normalisation ``x = (pixel / 255 - mean[c]) / std[c]`` itself, so callers feed the same
bytes to the float model, the golden model and the hardware.  With ``trace=True`` it returns every
intermediate activation keyed exactly like ``golden.run``'s trace, so float and integer tensors can
be compared (and scales calibrated) name by name.
"""
from __future__ import annotations

import numpy as np

from .ir import Conv, Fire, Head, MaxPool, Network, NetworkError

__all__ = ["forward", "normalize"]


def _check_pixels(net: Network, pixels) -> np.ndarray:
    x = np.asarray(pixels)
    if x.ndim == 3:
        x = x[None]
    if x.dtype != np.uint8:
        raise TypeError(f"pixels must be uint8 (raw pixel values 0..255), got {x.dtype}")
    if x.ndim != 4 or x.shape[1:] != (net.in_ch, net.height, net.width):
        raise ValueError(f"pixels have shape {x.shape}, {net.name} expects (N, {net.in_ch}, "
                         f"{net.height}, {net.width})")
    return x


def normalize(net: Network, pixels) -> np.ndarray:
    """The float input the network sees: ``(pixels / 255 - mean) / std``, float32 (N, C, H, W)."""
    import torch
    x = _check_pixels(net, pixels)
    return _normalize_t(net, torch.from_numpy(np.ascontiguousarray(x))).numpy()


def _normalize_t(net: Network, p):
    import torch
    mean = torch.tensor(net.mean, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(net.std, dtype=torch.float32).view(1, -1, 1, 1)
    return (p.to(torch.float32) / 255.0 - mean) / std


def forward(net: Network, pixels: np.ndarray, trace: bool = False,
            batch_size: int = 64, on_conv=None) -> tuple[np.ndarray, dict]:
    """Float32 logits (N, classes) -- the global average of the head's ReLU outputs -- for uint8
    ``pixels`` (N, C, H, W) or (C, H, W), and, with ``trace``, ``{name: float32 (N, C, H, W)}``:
    every layer's output under its name; for a Fire also ``NAME.squeeze``, ``NAME.expand1x1``,
    ``NAME.expand3x3`` and, with bypass, ``NAME.concat`` (before the add) and for complex bypass
    ``NAME.bypass`` (the 1x1 conv's output, no ReLU); for the head its conv output after ReLU,
    before pooling.  Without ``trace`` the dict is empty.  ``on_conv(conv, y)``, when given, is
    called with every conv's output before its ReLU (a torch tensor of one batch), e.g. to gather
    statistics (squeezehw.quant.bias_correction)."""
    import torch
    import torch.nn.functional as F

    if not net.weights:
        raise NetworkError(f"{net.name} has no weights; load them (importer.load_network(arch, weights)) "
                           "before running the float model")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, not {batch_size!r}")
    x_all = _check_pixels(net, pixels)
    w = {name: (torch.from_numpy(np.ascontiguousarray(wt, dtype=np.float32)),
                torch.from_numpy(np.ascontiguousarray(b, dtype=np.float32)))
         for name, (wt, b) in net.weights.items()}

    def conv(t, c: Conv):
        y = F.conv2d(t, *w[c.name], stride=c.stride, padding=c.padding)
        if on_conv is not None:
            on_conv(c, y)
        return F.relu(y) if c.relu else y

    logits, traces = [], {}
    with torch.no_grad():
        for start in range(0, len(x_all), batch_size):
            keep = {}
            x = _normalize_t(net, torch.from_numpy(np.ascontiguousarray(x_all[start:start + batch_size])))
            for layer in net.layers:
                if isinstance(layer, Conv):
                    x = conv(x, layer)
                elif isinstance(layer, MaxPool):
                    x = F.max_pool2d(x, layer.kernel, layer.stride, ceil_mode=True)
                elif isinstance(layer, Fire):
                    sq, e1c, e3c, *byp = layer.convs
                    s = conv(x, sq)
                    e1, e3 = conv(s, e1c), conv(s, e3c)
                    y = torch.cat([e1, e3], 1)
                    keep.update({sq.name: s, e1c.name: e1, e3c.name: e3})
                    if layer.bypass != "none":
                        keep[f"{layer.name}.concat"] = y
                        term = x
                        if layer.bypass == "complex":
                            term = conv(x, byp[0])
                            keep[byp[0].name] = term
                        y = F.relu(y + term)
                    x = y
                elif isinstance(layer, Head):
                    x = conv(x, layer.conv)
                    keep[layer.name] = x
                    logits.append(x.mean(dim=(2, 3)).numpy())
                    break
                else:                       # the IR has no other node types; guard future ones
                    raise NetworkError(f"{layer.name}: float model cannot run {type(layer).__name__}")
                keep[layer.name] = x
            if trace:
                for k, v in keep.items():
                    traces.setdefault(k, []).append(v.numpy())
    out = np.concatenate(logits).astype(np.float32) if logits else np.zeros((0, net.classes), np.float32)
    return out, {k: np.concatenate(v) for k, v in traces.items()}
