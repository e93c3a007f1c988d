"""Post-training quantisation: float network IR + calibration images -> integer model.

Follows docs/numerics.md (the arithmetic) and docs/quantization.md (the choices):

* the input normalisation ``(pixel/255 - mean)/std`` is folded into conv1, so the integer model
  eats raw pixels (refused when conv1 zero-pads and ``mean != 0``: the padded zeros would then
  stand for a pixel value the integer input cannot express);
* weights are symmetric per output channel, ``|w| <= 2**(w_bits-1) - 1``;
* biases are int32 in units of ``w_scale[o] * in_scale``;
* every activation tensor gets one real scale from the float model's calibration trace:
  ``range / 255`` after ReLU (uint8), ``range / 127`` for the complex-bypass conv (int8), where
  ``range`` is the largest value (``calibration='max'``), the ``percentile`` of the tensor's
  absolute values over all calibration images (exactly ``np.percentile``'s linear rule), or the
  range with the smallest clip + round error (``calibration='mse'``; the head unclipped), or per
  tensor the candidate range that keeps the logits closest to the float model's, chosen greedily in
  network order (``calibration='search'``, ``search_calibration.search_ranges``);
* the two expand convs of a Fire share one output scale (the larger range), so concat is wiring;
* requantisation ``mult``/``shift`` come from ``intmodel.requant_params``; a bypass add's two
  multipliers share one shift, chosen so the larger multiplier is normalised to 16 bits.
"""
from __future__ import annotations

import math
import sys

import numpy as np

from ..errors import UserError
from ..frontend.ir import Conv, Fire, Head, MaxPool, Network
from .intmodel import MAX_SHIFT, MULT_BITS, IntModel, QAdd, QConv, QFire, QHead, QMaxPool, requant_params

__all__ = ["QuantizeError", "quantize", "calibration_ranges", "mse_range", "add_params", "quantize_weights"]

CALIBRATIONS = ("percentile", "max", "mse", "search")
MSE_BINS = 2 ** 14            # histogram of |activation| per tensor, over [0, max]
MSE_CANDIDATES = 1024         # candidate ranges max * k / MSE_CANDIDATES ...
MSE_MIN_FRACTION = 1 / 64     # ... from max / 64 up (the grid step stays >= one histogram bin)
INT32_MAX = 2 ** 31 - 1


class QuantizeError(UserError, ValueError):
    """A network or option the quantizer cannot turn into a valid integer model."""


# --- calibration --------------------------------------------------------------------------------


class _TopK:
    """The K largest values of a stream of arrays, enough to compute a high percentile exactly."""

    def __init__(self, k: int):
        self.k = k
        self.vals = np.empty(0, np.float64)

    def add(self, a: np.ndarray):
        a = np.abs(a.ravel())
        if self.vals.size == self.k:            # full: only values above the current K-th count
            a = a[a > self.vals.min()]
        a = a.astype(np.float64)
        if a.size > self.k:
            a = np.partition(a, a.size - self.k)[a.size - self.k:]
        v = np.concatenate([self.vals, a])
        if v.size > self.k:
            v = np.partition(v, v.size - self.k)[v.size - self.k:]
        self.vals = v

    def percentile(self, n: int, q: float) -> float:
        """np.percentile(all n values, q) with the default linear interpolation."""
        top = np.sort(self.vals)                  # ascending: top[-1] is the max
        r = (n - 1) * q / 100.0
        lo = int(math.floor(r))
        frac = r - lo

        def s(i):                                  # i-th smallest of all n values
            return top[len(top) - (n - i)]
        if lo + 1 >= n:
            return float(s(n - 1))
        return float(s(lo) + frac * (s(lo + 1) - s(lo)))


def _float_traces(net: Network, calib: np.ndarray, batch_size: int, progress: bool, desc: str):
    """The float model's trace ({name: float32 (n, C, H, W)}) batch by batch."""
    from tqdm import tqdm

    from ..frontend.float_model import forward
    for start in tqdm(range(0, len(calib), batch_size), desc=desc, unit="batch",
                      disable=None if progress else True, file=sys.stderr):
        yield forward(net, calib[start:start + batch_size], trace=True, batch_size=batch_size)[1]


def mse_range(hist: np.ndarray, top: float, levels: int) -> float:
    """The range ``r`` minimising the squared quantisation error of the values in ``hist``.

    ``hist[i]`` counts values (absolute, non-zero) in ``[i, i+1) * top / len(hist)``; a value ``x``
    quantises to ``min(round(x / s), levels) * s`` with ``s = r / levels`` (rounding below ``r``,
    clipping above).  Candidates: ``top * k / MSE_CANDIDATES`` from ``top * MSE_MIN_FRACTION`` to
    ``top``; each bin counts as its centre (plus a within-bin error that is the same for every
    candidate).  Ties go to the smaller range."""
    hist = np.asarray(hist, np.float64)
    if hist.ndim != 1 or len(hist) == 0 or np.any(hist < 0):
        raise QuantizeError("mse_range needs a 1-D histogram of non-negative counts")
    if not (np.isfinite(top) and top > 0) or levels < 1:
        raise QuantizeError(f"mse_range needs a positive top value and levels, got {top!r}, {levels!r}")
    width = top / len(hist)
    used = np.flatnonzero(hist)
    centres, counts = (used + 0.5) * width, hist[used]
    k = np.arange(math.ceil(MSE_CANDIDATES * MSE_MIN_FRACTION), MSE_CANDIDATES + 1)
    cands = top * k / MSE_CANDIDATES
    errs = np.empty(len(cands))
    for i in range(0, len(cands), 64):             # 64 candidates at a time bounds the memory
        step = (cands[i:i + 64] / levels)[:, None]
        q = np.minimum(np.rint(centres[None, :] / step), levels) * step
        errs[i:i + 64] = ((centres[None, :] - q) ** 2 * counts[None, :]).sum(1)
    return float(cands[int(np.argmin(errs))])


def _mse_ranges(net: Network, calib: np.ndarray, batch_size: int, progress: bool) -> dict[str, float]:
    """Per tensor, the range minimising its clip + round error over the calibration images; the
    two expand convs of a Fire share one scale, so their outputs are judged together.

    The head is the exception: what counts there is the logit, the sum of a class's H x W pixels.
    Rounding errors average out in that sum (their variance shrinks by H*W), clipping errors do not,
    and clipping hits exactly the largest values, the ones the argmax compares; so the head's range
    is its largest value (no clipping)."""
    group, levels, no_clip = {}, {}, set()
    for layer in net.layers:
        if isinstance(layer, Head):
            no_clip.add(layer.name)
        if isinstance(layer, Fire):
            sq, e1, e3, *byp = layer.convs
            group[e1.name] = group[e3.name] = f"{layer.name}.expand"
            for c in byp:                          # complex bypass conv: int8, no ReLU
                levels[c.name] = 127
    top: dict[str, float] = {}
    for trace in _float_traces(net, calib, batch_size, progress, "calibrating (max)"):
        for name, t in trace.items():
            g = group.get(name, name)
            top[g] = max(top.get(g, 0.0), float(np.abs(t).max()))
    hists: dict[str, np.ndarray] = {}
    for trace in _float_traces(net, calib, batch_size, progress, "calibrating (histograms)"):
        for name, t in trace.items():
            g = group.get(name, name)
            if top[g] > 0 and name not in no_clip:
                a = np.abs(t[t != 0]).astype(np.float64)
                bins = np.minimum((a * (MSE_BINS / top[g])).astype(np.int64), MSE_BINS - 1)
                hists[g] = hists.get(g, 0) + np.bincount(bins, minlength=MSE_BINS)
    ranges = {}
    for name in sorted(set(top) - set(group.values()) | set(group)):
        g = group.get(name, name)
        if name in no_clip or not top[g] > 0:
            ranges[name] = top[g]
        else:
            ranges[name] = mse_range(hists[g], top[g], levels.get(name, 255))
    return ranges


def calibration_ranges(net: Network, calib: np.ndarray, *, calibration: str = "percentile",
                       percentile: float = 99.99, batch_size: int = 16,
                       progress: bool = True, search_log: list | None = None) -> dict[str, float]:
    """{trace name: range} over the float model's activations on ``calib`` (absolute values).

    ``calibration``: 'max' (largest value), 'percentile' (of the absolute values), 'mse' (the
    range that minimises the tensor's clip + round error on its 8-bit grid, ``mse_range``) or
    'search' (among mse, percentile, max and scaled mse ranges, the one whose fake-quantised
    network's logits are closest to the float model's, tensor by tensor in network order;
    ``search_calibration.search_ranges``; ``search_log``, a list, receives its per-tensor choices)."""
    if calibration not in CALIBRATIONS:
        raise QuantizeError(f"calibration must be one of {CALIBRATIONS}, got {calibration!r}")
    if calibration == "search":
        from .search_calibration import search_ranges
        base = {c: calibration_ranges(net, calib, calibration=c, percentile=percentile,
                                      batch_size=batch_size, progress=progress)
                for c in ("mse", "percentile", "max")}
        return search_ranges(net, calib, base=base, progress=progress, log=search_log)
    if calibration == "mse":
        return _mse_ranges(net, calib, batch_size, progress)
    n_img = len(calib)
    q = percentile if calibration == "percentile" else 100.0
    stats, sizes = {}, {}
    for trace in _float_traces(net, calib, batch_size, progress, "calibrating"):
        for name, t in trace.items():
            if name not in stats:
                per_image = t[0].size
                n = per_image * n_img
                sizes[name] = n
                lo = int(math.floor((n - 1) * q / 100.0))
                stats[name] = _TopK(min(n, n - lo + 1))
            stats[name].add(t)
    return {name: st.percentile(sizes[name], q) for name, st in stats.items()}


# --- weights ------------------------------------------------------------------------------------


def quantize_weights(w: np.ndarray, w_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-output-channel quantisation: (int8 weights, float64 w_scale (out,)).

    A channel whose weights are all zero gets scale 0 (fixed up by the caller)."""
    qmax = 2 ** (w_bits - 1) - 1
    wf = np.asarray(w, np.float64)
    amax = np.abs(wf.reshape(wf.shape[0], -1)).max(1)
    # weights a billion times below the layer's largest are numerically dead (training leaves
    # denormals behind); treating them as zero keeps such a channel's bias representable.  So is a
    # channel whose step amax/qmax underflows to zero (denormal weights in a layer of denormals).
    amax = np.where((amax > 1e-9 * amax.max()) & (amax / qmax > 0), amax, 0.0)
    scale = amax / qmax
    safe = np.where(scale > 0, scale, 1.0)
    wq = np.clip(np.rint(wf / safe[:, None, None, None]), -qmax, qmax).astype(np.int8)
    return wq, scale


def _qconv(conv: Conv, w: np.ndarray, b: np.ndarray, *, w_bits: int, in_scale: float,
           out_scale: float, shared=None) -> QConv:
    """``shared(conv, w)``, when given, picks codebook weights instead of the linear grid and
    returns (weights, w_scale, dict of QConv codebook fields, entry bits)."""
    book = {}
    if shared is None:
        wq, w_scale = quantize_weights(w, w_bits)
    else:
        wq, w_scale, book, w_bits = shared(conv, w)
    # A dead channel (all weights zero): its output is relu(bias) alone; any scale works, pick one
    # that gives the bias 8 bits of resolution below one output step.
    w_scale = np.where(w_scale > 0, w_scale, out_scale / in_scale / 256.0)
    bq = np.rint(np.asarray(b, np.float64) / (w_scale * in_scale))
    bad = np.flatnonzero(np.abs(bq) > INT32_MAX)
    if len(bad):
        o = int(bad[0])
        raise QuantizeError(
            f"{conv.name}: bias of output channel {o} is {bq[o]:.3g} weight steps, outside int32 "
            f"(its weights are tiny next to its bias {float(b[o]):.3g}); retrain or prune that channel, "
            "or use more weight bits")
    mult = np.empty(conv.out_ch, np.int64)
    shift = np.empty(conv.out_ch, np.int64)
    for o in range(conv.out_ch):
        try:
            mult[o], shift[o] = requant_params(float(w_scale[o] * in_scale / out_scale))
        except ValueError as e:
            raise QuantizeError(f"{conv.name}, output channel {o}: {e}; the calibration range of this "
                                "layer is implausibly small, calibrate on more (or more typical) "
                                "images") from None
    return QConv(name=conv.name, in_ch=conv.in_ch, out_ch=conv.out_ch, kernel=conv.kernel,
                 stride=conv.stride, padding=conv.padding, relu=conv.relu, weight=wq,
                 bias=bq.astype(np.int64), mult=mult, shift=shift, w_bits=w_bits, in_signed=False,
                 in_scale=float(in_scale), out_scale=float(out_scale), w_scale=w_scale.astype(np.float64),
                 **book)


def add_params(real_a: float, real_b: float) -> tuple[int, int, int]:
    """(mult_a, mult_b, shift): both multipliers share ``shift``; the larger is normalised to 16 bits."""
    big = max(real_a, real_b)
    if not big > 0:
        raise QuantizeError(f"bypass add multipliers must be positive, got {real_a}, {real_b}")
    shift = min(max(MULT_BITS - 1 - int(math.floor(math.log2(big))), 1), MAX_SHIFT)
    while True:
        ma, mb = round(real_a * 2.0 ** shift), round(real_b * 2.0 ** shift)
        if max(ma, mb) < 1 << MULT_BITS or shift == 1:
            break
        shift -= 1                  # rounding carried into the next power of two
    if max(ma, mb) >= 1 << MULT_BITS:
        raise QuantizeError(f"bypass add multiplier {big:g} is too large for {MULT_BITS} bits; "
                            "the add's output range is implausibly small, calibrate on more images")
    return int(ma), int(mb), int(shift)


# --- the quantizer ------------------------------------------------------------------------------


def _fold_input(net: Network, conv: Conv) -> tuple[np.ndarray, np.ndarray]:
    """conv1's weights with (pixel/255 - mean)/std folded in, so it reads raw pixels."""
    w, b = (np.asarray(a, np.float64) for a in net.weights[conv.name])
    mean = np.asarray(net.mean, np.float64)
    std = np.asarray(net.std, np.float64)
    if conv.padding and np.any(mean != 0):
        raise QuantizeError(
            f"{conv.name}: conv1 zero-pads (padding={conv.padding}) and the input mean is "
            f"{tuple(net.mean)}; the padded zeros of the normalised input would be the pixel value "
            "255*mean, which raw-pixel hardware cannot pad with. Use conv1 padding 0 or mean 0")
    wf = w / (255.0 * std)[None, :, None, None]
    bf = b - (w * (mean / std)[None, :, None, None]).sum(axis=(1, 2, 3))
    return wf, bf


def _validate(net, calib, w_bits, calibration, percentile):
    if not isinstance(net, Network):
        raise QuantizeError(f"quantize needs an ir.Network, got {type(net).__name__}")
    if not net.weights:
        raise QuantizeError(f"{net.name} has no float weights; load them before quantizing")
    if isinstance(w_bits, bool) or not isinstance(w_bits, int) or not 2 <= w_bits <= 8:
        raise QuantizeError(f"w_bits must be an integer from 2 to 8, got {w_bits!r}")
    if calibration not in CALIBRATIONS:
        raise QuantizeError(f"calibration must be one of {CALIBRATIONS}, got {calibration!r}")
    if not (isinstance(percentile, (int, float)) and 50 < percentile <= 100):
        raise QuantizeError(f"percentile must be in (50, 100], got {percentile!r}")
    calib = np.asarray(calib)
    if calib.dtype != np.uint8 or calib.ndim != 4 or calib.shape[1:] != (net.in_ch, net.height, net.width):
        raise QuantizeError(f"calibration images must be uint8 (N, {net.in_ch}, {net.height}, "
                            f"{net.width}), got {calib.dtype} {calib.shape}")
    if len(calib) == 0:
        raise QuantizeError("no calibration images; give at least one (64 or more is better)")
    if not isinstance(net.layers[0], Conv):
        raise QuantizeError(f"{net.layers[0].name}: the first layer must be a conv (conv1), into which "
                            "the input normalisation is folded")
    return calib


def _shared_weights(net: Network, calib: np.ndarray, spec, hessians: dict | None, batch_size: int,
                    progress: bool):
    """The ``shared`` hook of ``_qconv`` for a ``compression.CodebookSpec``."""
    from .compression import codebook_weights, layer_hessians
    spec = spec.validate()
    if spec.mode == "cluster" and spec.refine == "gptq" and hessians is None:
        hessians = layer_hessians(net, calib, batch_size=min(batch_size, 8), progress=progress)
    per_layer = {}

    def shared(conv: Conv, w: np.ndarray):
        h = hessians.get(conv.name) if hessians is not None and spec.refine == "gptq" else None
        q, scale, book, size, enc, info = codebook_weights(conv.name, w, spec, h)
        per_layer[conv.name] = info
        return q, scale, dict(codebook=book, codebook_size=size, index_bits=spec.index_bits,
                              encoding=enc), spec.bits
    return shared, per_layer


def quantize(net: Network, calib: np.ndarray, *, w_bits: int = 8, calibration: str = "percentile",
             percentile: float = 99.99, batch_size: int = 16, progress: bool = True,
             source: str | None = None, ranges: dict | None = None, codebook=None,
             hessians: dict | None = None, bias_correction: bool = False) -> IntModel:
    """Quantise ``net`` (float weights) using uint8 calibration images (N, C, H, W).

    ``ranges`` may carry ``calibration_ranges(net, calib, ...)`` computed earlier with the same
    images and rule (they do not depend on ``w_bits``), to skip the calibration pass.

    ``codebook``: a ``compression.CodebookSpec`` for shared weights (docs/compression.md) instead
    of the per-channel linear grid; ``w_bits`` then becomes the codebook entry width.  ``hessians``
    may carry ``compression.layer_hessians(net, calib)`` computed earlier (GPTQ refinement).

    ``bias_correction``: afterwards move each conv's bias so that its mean output on the
    calibration images matches the float model's (``bias_correction.correct_biases``)."""
    calib = _validate(net, calib, w_bits, calibration, percentile)
    shared, shared_info = None, None
    if codebook is not None:
        shared, shared_info = _shared_weights(net, calib, codebook, hessians, batch_size, progress)
        w_bits = codebook.bits
    search_log = [] if calibration == "search" and ranges is None else None
    if ranges is None:
        ranges = calibration_ranges(net, calib, calibration=calibration, percentile=percentile,
                                    batch_size=batch_size, progress=progress, search_log=search_log)
    dead = sorted(k for k, v in ranges.items() if not v > 0)

    def scale(name: str, signed: bool = False) -> float:
        if name not in ranges:
            raise QuantizeError(f"ranges has no calibration value for {name!r}; compute them with "
                                "calibration_ranges(net, calib) for this network")
        r = ranges[name] if ranges[name] > 0 else 1.0   # never active on the calibration set
        return r / (127.0 if signed else 255.0)

    def wb(conv: Conv):
        return net.weights[conv.name]

    layers = []
    in_scale = 1.0                  # conv1 reads raw pixels: one step is one pixel level
    for i, layer in enumerate(net.layers):
        if isinstance(layer, Conv):
            w, b = _fold_input(net, layer) if i == 0 else wb(layer)
            q = _qconv(layer, w, b, w_bits=w_bits, in_scale=in_scale, out_scale=scale(layer.name), shared=shared)
            layers.append(q)
            in_scale = q.out_scale
        elif isinstance(layer, MaxPool):
            layers.append(QMaxPool(layer.name, layer.kernel, layer.stride))
        elif isinstance(layer, Fire):
            sq, e1, e3, *byp = layer.convs
            s = _qconv(sq, *wb(sq), w_bits=w_bits, in_scale=in_scale, out_scale=scale(sq.name), shared=shared)
            e_scale = max(scale(e1.name), scale(e3.name))       # shared: concat is wiring
            q1 = _qconv(e1, *wb(e1), w_bits=w_bits, in_scale=s.out_scale, out_scale=e_scale, shared=shared)
            q3 = _qconv(e3, *wb(e3), w_bits=w_bits, in_scale=s.out_scale, out_scale=e_scale, shared=shared)
            fire = QFire(layer.name, s, q1, q3)
            out_scale = e_scale
            if layer.bypass != "none":
                out_scale = scale(layer.name)
                bconv, b_scale = None, in_scale
                if layer.bypass == "complex":
                    bconv = _qconv(byp[0], *wb(byp[0]), w_bits=w_bits, in_scale=in_scale,
                                   out_scale=scale(byp[0].name, signed=True), shared=shared)
                    b_scale = bconv.out_scale
                ma, mb, sh = add_params(e_scale / out_scale, b_scale / out_scale)
                fire.bypass = QAdd(f"{layer.name}.add", ma, mb, sh, bconv, out_scale)
            layers.append(fire)
            in_scale = out_scale
        elif isinstance(layer, Head):
            hc = layer.conv
            layers.append(QHead(layer.name, _qconv(hc, *wb(hc), w_bits=w_bits, in_scale=in_scale,
                                                    out_scale=scale(layer.name), shared=shared)))
        else:
            raise QuantizeError(f"{layer.name}: the quantizer cannot handle {type(layer).__name__}")
    info = {"source": source or net.name, "w_bits": w_bits, "act_bits": 8,
            "calibration": {"method": calibration,
                            "percentile": percentile if calibration in ("percentile", "search") else None,
                            "images": int(len(calib))},
            "dead_tensors": dead}
    if search_log:
        info["calibration"]["search"] = {e["point"]: e["chosen"] for e in search_log}
    if codebook is not None:
        info["codebook"] = {**codebook.as_dict(), "layers": shared_info}
    if bias_correction:
        info["bias_correction"] = True
    model = IntModel(name=net.name, in_ch=net.in_ch, height=net.height, width=net.width,
                     layers=layers, mean=tuple(net.mean), std=tuple(net.std), resize=net.resize,
                     labels=net.labels, w_bits=w_bits, info=info,
                     float_weights={k: (np.asarray(w, np.float32), np.asarray(b, np.float32))
                                    for k, (w, b) in net.weights.items()})
    if bias_correction:
        from .bias_correction import correct_biases
        correct_biases(model, net, calib, batch_size)
    return model
