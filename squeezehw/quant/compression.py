"""Weight sharing (codebooks) and sparse weight storage: Deep Compression as a weight format.

A conv's weights are stored as a *codebook* of at most ``2**k`` signed integer entries (per layer,
or per output channel) and one ``k``-bit index per weight.  The dense integer weights the golden
model and the hardware multiply with are exactly codebook values, so the integer contract
(docs/numerics.md) is unchanged: only how the weights are chosen and stored differs.

Choosing the codebooks (``CodebookSpec``, used by ``quantize.quantize(..., codebook=spec)``):

* ``mode="keep"``: a Deep Compression model already has at most ``2**k`` distinct values per layer;
  they are found and kept (no re-clustering), pruned zeros stay zero.  The integer entries are the
  values divided by one scale per codebook (``max|value| / (2**(B-1) - 1)``, ``B`` = entry bits),
  rounded (two values closer than one entry step become one entry; ``info["merged_values"]``
  counts them: none in Deep Compression v1.0 except in conv1).  A layer with more
  distinct values than a per-layer codebook can hold (conv1 after the input normalisation was
  folded into it: each input channel is scaled differently) keeps its values in one codebook per
  output channel instead, when each channel fits.
* ``mode="cluster"``: 1-D k-means per layer (or per output channel), initialised linearly over the
  weights' range, then, with ``refine="gptq"``, GPTQ-style rounding onto the codebook: one input
  column at a time, each column's rounding error spread over the not-yet-rounded columns with the
  inverse Hessian ``H = X X^T`` of the layer's float input X on the calibration images.  Pruned
  (exactly zero) weights stay zero throughout.

Storage (``encode_layer`` / ``decode_layer``), one bit stream per conv, chosen per layer by size:

* ``dense-index``: ``k`` bits per weight; zero is an ordinary codebook entry;
* ``bitmap``: per weight vector, one mask bit per weight (1 = non-zero), then a ``k``-bit index
  for each non-zero weight in lane order; zero is implicit (not a codebook entry).

The stream walks the weight memory words of the MVU in address order (``fold * SF + sf``); within a
word, lanes ``p * SIMD + s`` hold ``w[fold*PE + p, sf*SIMD + s]`` in the window's ``(ky, kx, c)``
order (hw/mvu.py).  Bits are packed least significant first: bit ``j`` of the stream is bit
``j % 8`` of byte ``j // 8``; an index is written LSB first.  The stream's length does not depend
on the folding; its layout does.
"""
from __future__ import annotations

import bz2
import io
import json
import lzma
import math
import sys
import zlib
from dataclasses import dataclass

import numpy as np

from ..errors import UserError

__all__ = ["CompressionError", "CodebookSpec", "ENCODINGS", "MAX_ENTRY_BITS", "looks_deep_compressed",
           "kmeans_1d", "gptq_round", "layer_hessians", "codebook_weights", "encoding_bits",
           "choose_encoding", "encode_layer", "decode_layer", "EncodedLayer", "layer_codebook",
           "check_codebook", "pack_weights_file", "unpack_weights_file", "compression_summary"]

ENCODINGS = ("dense-index", "bitmap")
MAX_ENTRY_BITS = 16
MODES = ("keep", "cluster")
REFINES = ("gptq", "none")
DEFAULT_ENTRY_BITS = {"keep": 16, "cluster": 12}


class CompressionError(UserError, ValueError):
    """A codebook, index width or encoded stream that does not fit its layer."""


@dataclass(frozen=True)
class CodebookSpec:
    """How ``quantize`` picks shared-weight codebooks.

    ``index_bits`` k (2..8): at most ``2**k`` entries per codebook.  ``mode``: ``"keep"`` the model's
    own shared values or ``"cluster"`` (k-means).  ``per_channel``: one codebook per output channel
    (cluster mode; keep mode falls back to it by itself for a layer that needs it).
    ``entry_bits`` B (2..16): width of a codebook entry (None: 16 for keep, 12 for cluster).
    ``refine``: ``"gptq"`` (error-compensating rounding, needs the calibration images) or ``"none"``
    (nearest entry).  ``encoding``: ``"auto"`` (the smaller of the two per layer) or one of
    ``ENCODINGS`` for every layer."""
    index_bits: int = 8
    mode: str = "cluster"
    per_channel: bool = False
    entry_bits: int | None = None
    refine: str = "gptq"
    encoding: str = "auto"
    kmeans_iters: int = 30
    damp: float = 0.01

    def validate(self) -> "CodebookSpec":
        k = self.index_bits
        if isinstance(k, bool) or not isinstance(k, int) or not 2 <= k <= 8:
            raise CompressionError(f"codebook index bits must be an integer from 2 to 8, got {k!r}")
        if self.mode not in MODES:
            raise CompressionError(f"codebook mode must be one of {MODES}, got {self.mode!r}")
        if self.refine not in REFINES:
            raise CompressionError(f"codebook refinement must be one of {REFINES}, got {self.refine!r}")
        if self.encoding not in ("auto",) + ENCODINGS:
            raise CompressionError(f"encoding must be 'auto' or one of {ENCODINGS}, got {self.encoding!r}")
        b = self.bits
        if isinstance(b, bool) or not isinstance(b, int) or not 2 <= b <= MAX_ENTRY_BITS:
            raise CompressionError(f"codebook entry bits must be an integer from 2 to {MAX_ENTRY_BITS}, "
                                   f"got {b!r}")
        return self

    @property
    def bits(self) -> int:
        return self.entry_bits if self.entry_bits is not None else DEFAULT_ENTRY_BITS.get(self.mode, 12)

    def as_dict(self) -> dict:
        return {"index_bits": self.index_bits, "mode": self.mode, "per_channel": self.per_channel,
                "entry_bits": self.bits, "refine": self.refine, "encoding": self.encoding}


# --- detecting a Deep Compression model ---------------------------------------------------------


def looks_deep_compressed(weights: dict, max_entries: int = 256) -> bool:
    """True when every conv but the first has at most ``max_entries`` distinct weight values, all
    of them together at most half as many distinct values as weights, and some weight is exactly
    zero: the signature of pruning + weight sharing.  (The first conv is left out: a folded input
    normalisation multiplies its distinct values.)  A trained float model has almost every weight
    distinct and is not taken for one."""
    names = list(weights)
    if len(names) < 2:
        return False
    zeros, distinct, size = False, 0, 0
    for name in names[1:]:
        w = np.asarray(weights[name][0])
        u = len(np.unique(w))
        if u > max_entries:
            return False
        distinct += u
        size += w.size
        zeros |= bool((w == 0).any())
    return zeros and 2 * distinct <= size


# --- k-means and GPTQ ---------------------------------------------------------------------------


def kmeans_1d(values: np.ndarray, n: int, iters: int = 30) -> np.ndarray:
    """Sorted centroids (at most ``n``) of 1-D k-means (Lloyd) on ``values``, initialised linearly
    over [min, max] (Deep Compression's choice: it keeps the rare large weights).  A cluster that
    runs empty (linear init puts many centroids in the sparse tails) is re-seeded by splitting the
    cluster with the largest squared error, so all ``n`` entries stay in use.  Fewer distinct
    values than ``n`` give those values exactly."""
    v = np.sort(np.asarray(values, np.float64).ravel())
    if v.size == 0:
        return np.zeros(0)
    uniq = np.unique(v)
    if len(uniq) <= n:
        return uniq
    c = np.linspace(v[0], v[-1], n)
    s1 = np.concatenate([[0.0], np.cumsum(v)])
    s2 = np.concatenate([[0.0], np.cumsum(v * v)])
    for _ in range(iters):
        edges = np.searchsorted(v, (c[1:] + c[:-1]) / 2)       # cluster j = v[lo[j]:hi[j]]
        lo = np.concatenate([[0], edges])
        hi = np.concatenate([edges, [v.size]])
        cnt = hi - lo
        keep = cnt > 0
        lo, hi, cnt = lo[keep], hi[keep], cnt[keep]
        mean = (s1[hi] - s1[lo]) / cnt
        sse = (s2[hi] - s2[lo]) - cnt * mean * mean
        new = list(mean)
        while len(new) < n:                                      # re-seed the empty clusters
            j = int(np.argmax(sse))
            if not sse[j] > 0:
                break
            sd = np.sqrt(sse[j] / cnt[j])
            new[j] = mean[j] - sd / 2
            new.append(mean[j] + sd / 2)
            sse[j] = 0.0
        new = np.sort(np.asarray(new))
        if len(new) == len(c) and np.array_equal(new, c):
            break
        c = new
    return np.unique(c)


def _nearest(w: np.ndarray, cand: np.ndarray) -> np.ndarray:
    """Index of the nearest candidate, per row: ``w`` (R,), ``cand`` (R, E) sorted ascending per row
    (entries may repeat at the end as padding)."""
    d = np.abs(cand - w[:, None])
    return d.argmin(1)


def gptq_round(w: np.ndarray, h: np.ndarray | None, cand: np.ndarray, fixed_zero: np.ndarray | None = None,
               damp: float = 0.01) -> np.ndarray:
    """Round ``w`` (O, N) onto per-row candidate values ``cand`` (O, E) (or (1, E) for one codebook),
    returning (O, N) candidate indices.

    With ``h`` (N, N) = the Hessian X X^T of the layer input, columns are rounded one at a time and
    each column's rounding error is pushed onto the columns not yet rounded through the upper
    Cholesky factor of ``H^-1`` (GPTQ, Frantar et al. 2022), which minimises the layer's output
    error ``||W X - Q X||`` greedily.  ``fixed_zero`` (O, N) marks weights that must become the
    candidate 0 (pruned weights); ``cand`` must then contain 0 in every row.  Without ``h``: nearest."""
    w = np.array(w, np.float64)
    o, n = w.shape
    cand = np.broadcast_to(np.asarray(cand, np.float64), (o, np.asarray(cand).shape[-1]))
    zero_idx = None
    if fixed_zero is not None and fixed_zero.any():
        zero_idx = np.abs(cand).argmin(1)
        if not np.all(cand[np.arange(o), zero_idx] == 0):
            raise ValueError("fixed zeros need 0 among every row's candidates")
    idx = np.empty((o, n), np.int64)
    if h is None:
        for i in range(n):
            idx[:, i] = _nearest(w[:, i], cand)
    else:
        h = np.array(h, np.float64)
        dead = np.diag(h) == 0
        h[dead, dead] = 1.0
        h += damp * np.mean(np.diag(h)) * np.eye(n)
        u = np.linalg.cholesky(np.linalg.inv(h)).T        # upper: H^-1 = U^T U
        for i in range(n):
            col = w[:, i]
            j = _nearest(col, cand)
            if zero_idx is not None:
                j = np.where(fixed_zero[:, i], zero_idx, j)
            idx[:, i] = j
            q = cand[np.arange(o), j]
            err = (col - q) / u[i, i]
            w[:, i + 1:] -= err[:, None] * u[i, i + 1:][None, :]
    if zero_idx is not None:
        idx = np.where(fixed_zero, zero_idx[:, None], idx)
    return idx


def _conv_inputs(net) -> dict:
    """{conv name: trace name of its input} ("" = the raw pixels)."""
    from ..frontend.ir import Conv, Fire, Head, MaxPool
    src, prev = {}, ""
    for layer in net.layers:
        if isinstance(layer, Conv):
            src[layer.name] = prev
            prev = layer.name
        elif isinstance(layer, MaxPool):
            prev = layer.name
        elif isinstance(layer, Fire):
            sq, e1, e3, *byp = layer.convs
            src[sq.name] = prev
            src[e1.name] = src[e3.name] = sq.name
            if byp:
                src[byp[0].name] = prev
            prev = layer.name
        elif isinstance(layer, Head):
            src[layer.conv.name] = prev
    return src


def layer_hessians(net, calib: np.ndarray, *, batch_size: int = 8, progress: bool = True) -> dict:
    """{conv name: X X^T / count} of each conv's float input on ``calib`` (uint8 pixels).

    X holds the conv's receptive fields (im2col, ``(c, ky, kx)`` order = PyTorch's weight order).
    conv1's input is the raw pixels, because its folded weights (quantize._fold_input) read them."""
    import torch
    import torch.nn.functional as F
    from tqdm import tqdm

    from ..frontend.float_model import forward
    src = _conv_inputs(net)
    convs = {c.name: c for c in net.convs()}
    acc = {name: None for name in convs}
    count = 0
    for start in tqdm(range(0, len(calib), batch_size), desc="layer statistics", unit="batch",
                      disable=None if progress else True, file=sys.stderr):
        x = calib[start:start + batch_size]
        _, trace = forward(net, x, trace=True, batch_size=batch_size)
        trace[""] = x.astype(np.float32)
        for name, c in convs.items():
            t = torch.from_numpy(np.ascontiguousarray(trace[src[name]], dtype=np.float32))
            cols = F.unfold(t, c.kernel, padding=c.padding, stride=c.stride)   # (B, N, L)
            cols = cols.transpose(0, 1).reshape(cols.shape[1], -1).double()
            h = (cols @ cols.T).numpy()
            acc[name] = h if acc[name] is None else acc[name] + h
        count += len(x)
    return {name: h / count for name, h in acc.items()}


# --- codebooks ----------------------------------------------------------------------------------


def _int_entries(values: np.ndarray, bits: int, what: str, exact: bool) -> tuple[np.ndarray, float]:
    """(sorted unique integer entries, scale) for real ``values``: ``round(v / scale)`` with
    ``scale = max|v| / (2**(bits-1) - 1)``.  With ``exact``, distinct values must stay distinct."""
    values = np.asarray(values, np.float64)
    amax = float(np.abs(values).max()) if values.size else 0.0
    if amax == 0:
        return np.zeros(1, np.int64), 0.0
    scale = amax / (2 ** (bits - 1) - 1)
    ints = np.rint(values / scale).astype(np.int64)
    if exact and len(np.unique(ints)) < len(np.unique(values)):
        raise CompressionError(f"{what}: its {len(np.unique(values))} shared values are not all distinct "
                               f"at {bits}-bit codebook entries; use more entry bits (up to "
                               f"{MAX_ENTRY_BITS})")
    return np.unique(ints), scale


def encoding_bits(encoding: str, size: int, nonzero: int, k: int) -> int:
    """Bits of a layer's stream: ``dense-index`` k per weight, ``bitmap`` 1 per weight + k per non-zero."""
    if encoding == "dense-index":
        return size * k
    if encoding == "bitmap":
        return size + nonzero * k
    raise CompressionError(f"unknown encoding {encoding!r}; use one of {ENCODINGS}")


def choose_encoding(size: int, nonzero: int, k: int, want: str = "auto") -> str:
    if want != "auto":
        return want
    return min(ENCODINGS, key=lambda e: (encoding_bits(e, size, nonzero, k), e != "dense-index"))


def codebook_weights(name: str, w: np.ndarray, spec: CodebookSpec, h: np.ndarray | None = None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str, dict]:
    """Shared-weight integers for one conv's float weights ``w`` (O, I, K, K).

    Returns ``(weight int16 (O, I, K, K), w_scale float64 (O,), codebook int64 (G, E),
    codebook_size int64 (G,), encoding, info)``; G is 1 (per layer) or O (per output channel).
    Every weight is an entry of its codebook; with ``bitmap`` encoding a zero weight is the implicit
    zero and the codebook lists non-zero entries only."""
    spec = spec.validate()
    k, bits = spec.index_bits, spec.bits
    wf = np.asarray(w, np.float64)
    o = wf.shape[0]
    rows = wf.reshape(o, -1)
    zero = rows == 0
    size, nonzero = rows.size, int((~zero).sum())
    enc = choose_encoding(size, nonzero, k, spec.encoding)
    has_zero = bool(zero.any())
    # room for non-zero entries: the bitmap's zero is implicit; dense-index spends an entry on it
    room = 2 ** k if enc == "bitmap" or not has_zero else 2 ** k - 1
    info = {"mode": spec.mode}
    if spec.mode == "keep":
        per_channel = spec.per_channel
        distinct = len(np.unique(rows[~zero]))
        if not per_channel and distinct > room:
            per_channel = True
            info["per_channel_because"] = f"{distinct} distinct non-zero values > {room} per layer"
        groups = [rows[g][~zero[g]] for g in range(o)] if per_channel else [rows[~zero]]
        worst = max((len(np.unique(g)) for g in groups), default=0)
        if worst > room:
            what = "an output channel" if per_channel else "the layer"
            raise CompressionError(
                f"{name}: {what} has {worst} distinct non-zero weight values, more than the {room} a "
                f"{k}-bit {enc} codebook holds; keeping the model's shared values needs more index bits "
                f"(--bits {math.ceil(math.log2(worst + (enc == 'dense-index' and has_zero)))}),"
                f" or re-cluster (--codebook cluster)")
        entries, scales, merged = [], [], 0
        for g in groups:
            u = np.unique(g)
            # values closer than half an entry step merge (folded conv1 has such near-twins); the
            # index structure is otherwise kept exactly and each value to within half a step
            e, s = _int_entries(u, bits, name, exact=False)
            entries.append(e)
            scales.append(s)
            merged += len(u) - len(e) if u.size else 0
        info["merged_values"] = merged
        q_of = []
        for gi in range(o):
            g = gi if per_channel else 0
            s = scales[g]
            q_of.append(np.rint(rows[gi] / s).astype(np.int64) if s > 0 else np.zeros(rows.shape[1], np.int64))
        q = np.stack(q_of)
    else:
        per_channel = spec.per_channel
        groups = [rows[g][~zero[g]] for g in range(o)] if per_channel else [rows[~zero]]
        entries, scales = [], []
        for g in groups:
            c = kmeans_1d(g, room, spec.kmeans_iters) if g.size else np.zeros(0)
            e, s = _int_entries(c, bits, name, exact=False) if c.size else (np.zeros(1, np.int64), 0.0)
            entries.append(e)
            scales.append(s)
        # candidates in real units, one row per output channel; the zero candidate (pruned weights,
        # and any weight in a bitmap layer) is appended where it is allowed
        width = max(len(e) for e in entries) + 1
        cand = np.empty((len(groups), width))
        for gi, (e, s) in enumerate(zip(entries, scales)):
            vals = e * s
            if enc == "bitmap" or has_zero:
                vals = np.append(vals, 0.0)
            cand[gi] = np.concatenate([vals, np.full(width - len(vals), vals[-1])])
        row_cand = cand if per_channel else cand[:1]
        idx = gptq_round(rows, h if spec.refine == "gptq" else None, row_cand,
                         fixed_zero=zero if has_zero else None, damp=spec.damp)
        cand_b = np.broadcast_to(row_cand, (o, width))
        real = np.take_along_axis(cand_b, idx, 1)
        q = np.zeros_like(idx)
        for gi in range(o):
            s = scales[gi if per_channel else 0]
            if s > 0:
                q[gi] = np.rint(real[gi] / s).astype(np.int64)
    # the codebook actually used (entries no weight picked are dropped), zero handled by encoding
    G = o if per_channel else 1
    books = []
    for g in range(G):
        used = np.unique(q[g] if per_channel else q)
        if enc == "bitmap":
            used = used[used != 0]
        books.append(used if used.size else np.zeros(1, np.int64))
    width = max(len(b) for b in books)
    codebook = np.stack([np.concatenate([b, np.full(width - len(b), b[-1])]) for b in books])
    sizes = np.array([len(b) for b in books], np.int64)
    w_scale = np.array([scales[g if per_channel else 0] for g in range(o)], np.float64)
    info.update({"per_channel": per_channel, "encoding": enc, "entries": int(sizes.max()),
                 "nonzero": int((q != 0).sum()), "size": int(q.size)})
    return q.reshape(wf.shape).astype(np.int16), w_scale, codebook.astype(np.int64), sizes, enc, info


def layer_codebook(weight: np.ndarray, encoding: str, per_channel: bool) -> tuple[np.ndarray, np.ndarray]:
    """(codebook (G, E), sizes (G,)) of integer weights as they stand: their distinct values
    (non-zero only for ``bitmap``)."""
    rows = np.asarray(weight).reshape(weight.shape[0], -1).astype(np.int64)
    groups = list(rows) if per_channel else [rows]
    books = []
    for g in groups:
        u = np.unique(g)
        if encoding == "bitmap":
            u = u[u != 0]
        books.append(u if u.size else np.zeros(1, np.int64))
    width = max(len(b) for b in books)
    return (np.stack([np.concatenate([b, np.full(width - len(b), b[-1])]) for b in books]),
            np.array([len(b) for b in books], np.int64))


def check_codebook(name: str, weight: np.ndarray, codebook: np.ndarray, sizes: np.ndarray,
                   index_bits: int, encoding: str) -> None:
    """Raise ``CompressionError`` unless every weight is an entry of its codebook and each codebook
    has at most ``2**index_bits`` entries (the implicit zero of ``bitmap`` not counted)."""
    if encoding not in ENCODINGS:
        raise CompressionError(f"{name}: unknown encoding {encoding!r}; use one of {ENCODINGS}")
    if isinstance(index_bits, bool) or not isinstance(index_bits, (int, np.integer)) or not 1 <= index_bits <= 8:
        raise CompressionError(f"{name}: codebook index bits must be 1..8, got {index_bits!r}")
    codebook = np.asarray(codebook)
    if codebook.ndim != 2 or codebook.shape[0] not in (1, weight.shape[0]) or len(sizes) != codebook.shape[0]:
        raise CompressionError(f"{name}: codebook shape {codebook.shape} is neither one per layer nor one "
                               f"per output channel ({weight.shape[0]})")
    big = int(np.max(sizes))
    if big > 2 ** index_bits:
        raise CompressionError(f"{name}: a codebook has {big} entries, more than 2**{index_bits} = "
                               f"{2 ** index_bits} that {index_bits}-bit indices address; use "
                               f"{math.ceil(math.log2(big))} index bits or fewer entries")
    lim = 2 ** (MAX_ENTRY_BITS - 1)
    if codebook.min() < -lim or codebook.max() >= lim:
        raise CompressionError(f"{name}: codebook entries must be {MAX_ENTRY_BITS}-bit signed integers")
    rows = np.asarray(weight).reshape(weight.shape[0], -1).astype(np.int64)
    for o in range(rows.shape[0]):
        g = o if codebook.shape[0] > 1 else 0
        book = codebook[g, :sizes[g]]
        vals = rows[o] if encoding == "dense-index" else rows[o][rows[o] != 0]
        if not np.isin(vals, book).all():
            bad = vals[~np.isin(vals, book)][0]
            raise CompressionError(f"{name}: output channel {o} has weight {bad}, which is not in its "
                                   f"codebook; the weights must be codebook values")


# --- bit streams --------------------------------------------------------------------------------


@dataclass
class EncodedLayer:
    name: str
    encoding: str
    index_bits: int
    bits: int               # length of the stream in bits
    data: bytes             # the stream, LSB first, zero-padded to whole bytes
    pe: int = 1
    simd: int = 1


def _word_order(weight: np.ndarray, pe: int, simd: int) -> np.ndarray:
    """(words, PE*SIMD) view of (O, I, K, K) weights in the MVU's memory order (hw/mvu.py)."""
    o, i, kh, kw = weight.shape
    m = np.asarray(weight).transpose(0, 2, 3, 1).reshape(o, kh * kw * i)     # (ky, kx, c)
    n = m.shape[1]
    if o % pe or n % simd:
        raise CompressionError(f"PE={pe} must divide {o} outputs and SIMD={simd} {n} inputs")
    # word (f, sf), lane (p, s) = m[f*PE + p, sf*SIMD + s]
    return m.reshape(o // pe, pe, n // simd, simd).transpose(0, 2, 1, 3).reshape(-1, pe * simd)


def _channel_of_lane(o: int, n: int, pe: int, simd: int) -> np.ndarray:
    ch = np.broadcast_to(np.arange(o)[:, None], (o, n))
    return ch.reshape(o // pe, pe, n // simd, simd).transpose(0, 2, 1, 3).reshape(-1, pe * simd)


def _indices(weight, codebook, sizes, encoding, pe, simd):
    """(words, lanes) values, (words, lanes) codebook indices (meaningless where value 0 in bitmap)."""
    o = weight.shape[0]
    vals = _word_order(weight, pe, simd).astype(np.int64)
    ch = _channel_of_lane(o, vals.size // o, pe, simd)
    g = ch if codebook.shape[0] > 1 else np.zeros_like(ch)
    book = np.asarray(codebook, np.int64)
    # index of each value in its (sorted, padded) codebook row
    idx = np.empty(vals.shape, np.int64)
    for gi in np.unique(g):
        sel = g == gi
        row = book[gi, :sizes[gi]]
        pos = np.searchsorted(row, vals[sel])
        idx[sel] = np.minimum(pos, len(row) - 1)
    return vals, idx


def encode_layer(name: str, weight: np.ndarray, codebook: np.ndarray, sizes: np.ndarray,
                 index_bits: int, encoding: str, pe: int = 1, simd: int = 1) -> EncodedLayer:
    """The layer's weight stream (see the module docstring for the bit layout)."""
    weight = np.asarray(weight)
    check_codebook(name, weight, codebook, sizes, index_bits, encoding)
    vals, idx = _indices(weight, codebook, sizes, encoding, pe, simd)
    k = index_bits
    ibits = ((idx[..., None] >> np.arange(k)) & 1).astype(np.uint8)          # (words, lanes, k)
    if encoding == "dense-index":
        bits = ibits.reshape(-1)
    else:
        nz = vals != 0
        words, lanes = vals.shape
        seg = np.concatenate([nz.astype(np.uint8), ibits.reshape(words, lanes * k)], axis=1)
        keep = np.concatenate([np.ones((words, lanes), bool), np.repeat(nz, k, axis=1)], axis=1)
        bits = seg[keep]
    return EncodedLayer(name, encoding, k, int(bits.size),
                        np.packbits(bits, bitorder="little").tobytes(), pe, simd)


def decode_layer(enc: EncodedLayer, shape: tuple, codebook: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Dense integer weights (O, I, K, K) from a stream; ``CompressionError`` when the stream does
    not match the layer's shape (too short, too long, stray bits) or an index is past its codebook."""
    o, i, kh, kw = shape
    n = i * kh * kw
    pe, simd, k = enc.pe, enc.simd, enc.index_bits
    if enc.encoding not in ENCODINGS:
        raise CompressionError(f"{enc.name}: unknown encoding {enc.encoding!r}")
    if o % pe or n % simd:
        raise CompressionError(f"{enc.name}: PE={pe}/SIMD={simd} do not divide the layer shape {shape}")
    avail = len(enc.data) * 8
    if enc.bits > avail or enc.bits <= avail - 8:
        raise CompressionError(f"{enc.name}: stream says {enc.bits} bits but holds {len(enc.data)} bytes")
    bits = np.unpackbits(np.frombuffer(enc.data, np.uint8), bitorder="little")[:enc.bits].astype(np.int64)
    words, lanes = o * n // (pe * simd), pe * simd
    weights = 2 ** np.arange(k)
    if enc.encoding == "dense-index":
        if enc.bits != words * lanes * k:
            raise CompressionError(f"{enc.name}: a dense-index stream of a {shape} layer at {k} bits "
                                   f"has {words * lanes * k} bits, this one {enc.bits}; it belongs to "
                                   "another layer or index width")
        idx = (bits.reshape(words, lanes, k) * weights).sum(2)
        nz = np.ones((words, lanes), bool)
    else:
        nz = np.zeros((words, lanes), bool)
        idx = np.zeros((words, lanes), np.int64)
        pos = 0
        for wd in range(words):
            if pos + lanes > enc.bits:
                raise CompressionError(f"{enc.name}: bitmap stream ends in word {wd} of {words}; "
                                       f"it is too short for a {shape} layer")
            m = bits[pos:pos + lanes].astype(bool)
            pos += lanes
            cnt = int(m.sum())
            if pos + cnt * k > enc.bits:
                raise CompressionError(f"{enc.name}: bitmap stream ends inside word {wd}'s indices; "
                                       f"it is too short for a {shape} layer")
            nz[wd] = m
            idx[wd, m] = (bits[pos:pos + cnt * k].reshape(cnt, k) * weights).sum(1)
            pos += cnt * k
        if pos != enc.bits:
            raise CompressionError(f"{enc.name}: bitmap stream has {enc.bits - pos} bits left after the "
                                   f"{words} words of a {shape} layer; it belongs to another layer")
    ch = _channel_of_lane(o, n, pe, simd)
    g = ch if codebook.shape[0] > 1 else np.zeros_like(ch)
    if (nz & (idx >= np.asarray(sizes)[g])).any():
        raise CompressionError(f"{enc.name}: an index points past its codebook's {int(np.max(sizes))} entries")
    vals = np.where(nz, np.asarray(codebook)[g, np.minimum(idx, codebook.shape[1] - 1)], 0)
    m = vals.reshape(o // pe, n // simd, pe, simd).transpose(0, 2, 1, 3).reshape(o, n)
    return m.reshape(o, kh, kw, i).transpose(0, 3, 1, 2).copy()


# --- the entropy-coded model file ---------------------------------------------------------------

FILE_MAGIC = b"SQHWCW1\n"
CODECS = {"lzma": (lambda b: lzma.compress(b, preset=9 | lzma.PRESET_EXTREME), lzma.decompress),
          "zlib": (lambda b: zlib.compress(b, 9), zlib.decompress),
          "bz2": (lambda b: bz2.compress(b, 9), bz2.decompress)}


def _file_sections(q) -> list[tuple[str, np.ndarray]]:
    """Byte-aligned symbols compress better than packed bit streams: the mask as packed bits, one
    byte per codebook index, the codebook as int16."""
    vals, idx = _indices(q.weight, q.codebook, q.codebook_size, q.encoding, 1, 1)
    nz = vals.reshape(-1) != 0
    out = [("codebook", q.codebook.astype("<i2")), ("codebook_size", q.codebook_size.astype("<u2"))]
    if q.encoding == "bitmap":
        out.append(("mask", np.packbits(nz, bitorder="little")))
        out.append(("index", idx.reshape(-1)[nz].astype(np.uint8)))
    else:
        out.append(("index", idx.reshape(-1).astype(np.uint8)))
    return out


def pack_weights_file(model, codec: str = "lzma") -> bytes:
    """The model's shared-weight convs as one entropy-coded file (header + codec(payload)).

    The header is JSON (layer names, shapes, encodings, index bits, section lengths); the payload,
    compressed as a whole by a standard library codec (``lzma``, ``zlib`` or ``bz2``), holds per conv
    its int16 codebook, its mask (bitmap layers) and one byte per index."""
    if codec not in CODECS:
        raise CompressionError(f"codec must be one of {', '.join(CODECS)}, got {codec!r}")
    header, payload = {"codec": codec, "layers": []}, io.BytesIO()
    for q in model.convs():
        if q.codebook is None:
            raise CompressionError(f"{q.name} has no codebook; quantize with --codebook to write a "
                                   "compressed weights file")
        secs = []
        for tag, a in _file_sections(q):
            b = np.ascontiguousarray(a).tobytes()
            payload.write(b)
            secs.append([tag, str(a.dtype), list(a.shape), len(b)])
        header["layers"].append({"name": q.name, "shape": list(q.weight.shape), "encoding": q.encoding,
                                 "index_bits": q.index_bits, "sections": secs})
    h = json.dumps(header).encode()
    return FILE_MAGIC + len(h).to_bytes(4, "little") + h + CODECS[codec][0](payload.getvalue())


def unpack_weights_file(data: bytes) -> dict:
    """{conv name: dense integer weights} from ``pack_weights_file``'s bytes; CompressionError when
    the file is damaged or a section does not match its layer's shape."""
    if not data.startswith(FILE_MAGIC):
        raise CompressionError("not a squeezehw compressed weights file (bad magic)")
    try:
        n = int.from_bytes(data[len(FILE_MAGIC):len(FILE_MAGIC) + 4], "little")
        header = json.loads(data[len(FILE_MAGIC) + 4:len(FILE_MAGIC) + 4 + n])
        payload = CODECS[header["codec"]][1](data[len(FILE_MAGIC) + 4 + n:])
    except (ValueError, KeyError, lzma.LZMAError, zlib.error, OSError) as e:
        raise CompressionError(f"compressed weights file is damaged ({e})") from None
    out, pos = {}, 0
    for lay in header["layers"]:
        secs = {}
        for tag, dtype, shape, length in lay["sections"]:
            if pos + length > len(payload):
                raise CompressionError(f"{lay['name']}: compressed weights file is truncated")
            secs[tag] = np.frombuffer(payload[pos:pos + length], dtype).reshape(shape)
            pos += length
        shape = tuple(lay["shape"])
        o = shape[0]
        size = int(np.prod(shape))
        book, sizes = secs["codebook"].astype(np.int64), secs["codebook_size"].astype(np.int64)
        idx = secs["index"].astype(np.int64)
        if lay["encoding"] == "bitmap":
            nz = np.unpackbits(secs["mask"], bitorder="little").astype(bool)
            if nz.size < size or nz[size:].any() or nz.size - size >= 8:
                raise CompressionError(f"{lay['name']}: mask does not match the layer shape {shape}")
            nz = nz[:size]
            if int(nz.sum()) != idx.size:
                raise CompressionError(f"{lay['name']}: {idx.size} indices for {int(nz.sum())} non-zero "
                                       f"weights; the file does not match the layer shape {shape}")
        else:
            if idx.size != size:
                raise CompressionError(f"{lay['name']}: {idx.size} indices for a {shape} layer")
            nz = np.ones(size, bool)
        full = np.zeros(size, np.int64)
        full[nz] = idx
        g = np.repeat(np.arange(o), size // o) if book.shape[0] > 1 else np.zeros(size, np.int64)
        if (nz & (full >= sizes[g])).any():
            raise CompressionError(f"{lay['name']}: an index points past its codebook")
        vals = np.where(nz, book[g, np.minimum(full, book.shape[1] - 1)], 0)
        # the file stores channel-major (O, (ky, kx, c)) order, as _word_order with PE = SIMD = 1
        out[lay["name"]] = vals.reshape(o, shape[2], shape[3], shape[1]).transpose(0, 3, 1, 2)
    if pos != len(payload):
        raise CompressionError("compressed weights file has trailing data; it belongs to another model")
    return out


def compression_summary(model) -> dict:
    """Per conv and total: stream bits, codebook bits, encoding; plus the entropy-coded file size
    with each library codec.  Only for models whose every conv has a codebook."""
    convs, stream, book = {}, 0, 0
    for q in model.convs():
        if q.codebook is None:
            return {}
        sb, cb = q.stream_bits, q.codebook_bits
        convs[q.name] = {"encoding": q.encoding, "index_bits": q.index_bits, "entry_bits": q.w_bits,
                         "codebooks": int(q.codebook.shape[0]), "entries": int(q.codebook_size.max()),
                         "nonzero": int((q.weight != 0).sum()), "weights": int(q.weight.size),
                         "stream_bits": sb, "codebook_bits": cb}
        stream += sb
        book += cb
    files = {c: len(pack_weights_file(model, c)) for c in CODECS}
    return {"convs": convs, "stream_bits": stream, "stream_bytes": (stream + 7) // 8,
            "codebook_bits": book, "codebook_bytes": (book + 7) // 8, "file_bytes": files,
            "best_file": min(files, key=files.get)}
