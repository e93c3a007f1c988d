"""Compressed weight streams for the MVU: encoder, reference decoder and the decoder's pace check.

Storage format (agreed with the quantizer side, issue 12):

- per layer a **codebook** of at most ``2**k`` signed integer entries (width ``B <= 16`` bits); the
  dense integer weights the golden model uses are exactly codebook values (or 0, see bitmap);
- the MVU consumes one *weight vector* per cycle: ``PE x SIMD`` lanes, lane ``p*SIMD + s`` =
  ``weights[fold*PE + p, sf*SIMD + s]``, vectors in the order ``fold*SF + sf`` (``MVU.weight_words``);
- **dense-index**: per vector ``L = PE*SIMD`` indices of ``k`` bits, lane 0 first;
- **bitmap**: per vector ``L`` mask bits (bit ``j`` set = lane ``j`` non-zero), then a ``k``-bit index
  for each set bit in lane order; zero weights are implicit (cost 1 bit);
- bits packed LSB-first, vectors back to back, into words of ``W`` bits of one on-chip memory.  The
  MVU replays the same vectors for every output pixel, so the memory holds one *period* (all
  ``NF*SF`` vectors) padded with zeros to a whole number of words; the decoder drops the pad bits
  together with the period's last vector and reads the memory circularly.

:func:`choose_layout` picks ``W`` (and the decoder's bit-buffer size) from the actual stream with an
exact cycle model of :class:`squeezehw.hw.weight_decoder.WeightDecoder` (:func:`pace`): the
decoder with an always-ready consumer is deterministic and its state is finite, so once its state at
the start of a period repeats, its future is that loop; the layout is accepted only if the loop
emits one vector every cycle.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import UserError
from ..frontend.ir import bits_for_signed

__all__ = ["FORMATS", "WeightStream", "PackedWeights", "Pace", "mvu_vectors", "encode_stream",
           "decode_stream", "pack", "decode_words", "pace", "emit_schedule", "choose_layout",
           "encode_for_mvu", "encode_model", "model_weight_codes"]

FORMATS = ("dense-index", "bitmap")
MAX_ENTRY_BITS = 16


def mvu_vectors(weights, pe: int, simd: int) -> np.ndarray:
    """Dense (O, N) weights -> (NF*SF, PE*SIMD) weight vectors in the MVU's consumption order."""
    w = np.asarray(weights)
    if w.ndim != 2:
        raise UserError(f"weights must be a 2-D (outputs, inputs) array, got shape {w.shape}")
    O, N = w.shape
    if pe < 1 or simd < 1 or O % pe or N % simd:
        raise UserError(f"PE={pe} must divide {O} outputs and SIMD={simd} {N} inputs")
    NF, SF = O // pe, N // simd
    # (NF, PE, SF, SIMD) -> (NF, SF, PE, SIMD): vector fold*SF + sf, lane p*SIMD + s
    return w.reshape(NF, pe, SF, simd).transpose(0, 2, 1, 3).reshape(NF * SF, pe * simd)


@dataclass(frozen=True)
class WeightStream:
    """One period of encoded weight vectors (before packing into words)."""
    fmt: str
    k: int                          # index bits
    codebook: tuple                 # signed ints, index -> value
    lanes: int                      # L = PE*SIMD
    vector_bits: tuple              # bits of each vector, in order
    bits: np.ndarray = field(repr=False, compare=False)   # the period, one 0/1 uint8 per bit, in order

    @property
    def vectors(self) -> int:
        return len(self.vector_bits)

    @property
    def total_bits(self) -> int:
        return sum(self.vector_bits)

    @property
    def max_vector_bits(self) -> int:
        """Bits of the largest vector the format allows (the decoder must hold one whole)."""
        return self.lanes * self.k + (self.lanes if self.fmt == "bitmap" else 0)

    @property
    def entry_bits(self) -> int:
        """Two's complement width of the codebook entries (and of 0)."""
        return bits_for_signed(min(min(self.codebook, default=0), 0), max(max(self.codebook, default=0), 0))


def _check_codebook(codebook, k: int):
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= 16:
        raise UserError(f"index width k={k!r} must be an integer in 1..16")
    cb = [int(v) for v in codebook]
    if len(cb) > 1 << k:
        raise UserError(f"codebook has {len(cb)} entries, more than 2**{k} = {1 << k}; "
                        f"use k >= {max(1, (len(cb) - 1).bit_length())} or a smaller codebook")
    if len(set(cb)) != len(cb):
        raise UserError("codebook entries must be distinct")
    if cb and bits_for_signed(min(min(cb), 0), max(max(cb), 0)) > MAX_ENTRY_BITS:
        raise UserError(f"codebook entries must fit {MAX_ENTRY_BITS}-bit two's complement "
                        f"(range {min(cb)}..{max(cb)})")
    return tuple(cb)


def encode_stream(vectors, codebook, k: int, fmt: str) -> WeightStream:
    """Encode (V, L) dense integer weight vectors (every value a codebook entry, or 0 in bitmap)."""
    if fmt not in FORMATS:
        raise UserError(f"weight format {fmt!r} must be one of {', '.join(FORMATS)}")
    cb = _check_codebook(codebook, k)
    vec = np.asarray(vectors)
    if vec.ndim != 2 or vec.shape[0] < 1 or vec.shape[1] < 1:
        raise UserError(f"weight vectors must be a non-empty (vectors, lanes) array, got {vec.shape}")
    if vec.size and not np.issubdtype(vec.dtype, np.integer):
        raise UserError(f"weight vectors must be integers, got dtype {vec.dtype}")
    vec = vec.astype(np.int64)
    V, L = vec.shape
    coded = vec != 0 if fmt == "bitmap" else np.ones_like(vec, dtype=bool)   # lanes with an index
    # codebook index of every coded lane (vectorised lookup in the sorted codebook)
    order = np.argsort(np.array(cb, dtype=np.int64)) if cb else np.zeros(0, dtype=np.int64)
    sorted_cb = np.array(cb, dtype=np.int64)[order]
    values = vec[coded]
    at = np.searchsorted(sorted_cb, values) if len(cb) else np.zeros(values.shape, dtype=np.int64)
    ok = (at < len(cb)) & (sorted_cb[np.minimum(at, max(len(cb) - 1, 0))] == values) if len(cb) else \
        np.zeros(values.shape, dtype=bool)
    if not ok.all():
        bad = np.flatnonzero(~ok)[0]
        a = int(np.flatnonzero(coded.reshape(-1))[bad] // L)
        raise UserError(f"weight {int(values[bad])} (vector {a}) is not in the codebook "
                        f"({len(cb)} entries); the codebook must hold every "
                        f"{'non-zero ' if fmt == 'bitmap' else ''}weight value")
    index = order[at] if len(cb) else at
    # bit positions: vector a starts at start[a]; bitmap: L mask bits, then k bits per coded lane
    head = L if fmt == "bitmap" else 0
    sizes = head + k * coded.sum(1)
    start = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    bits = np.zeros(int(sizes.sum()), dtype=np.uint8)
    if fmt == "bitmap":
        bits[(start[:, None] + np.arange(L)[None, :]).reshape(-1)] = coded.reshape(-1)
    rank = np.cumsum(coded, axis=1) - 1                      # the coded lane's place in its vector
    base = (start[:, None] + head + k * rank)[coded]        # first bit of each index, in stream order
    for b in range(k):
        bits[base + b] = (index >> b) & 1
    return WeightStream(fmt, int(k), cb, L, tuple(int(x) for x in sizes), bits)


def decode_stream(stream: WeightStream) -> np.ndarray:
    """Reference decoder: the period's (V, L) dense vectors from the unpacked bits."""
    return _decode_bits(stream.bits, stream, stream.vectors, pad=0)


def _decode_bits(bits: np.ndarray, s: WeightStream, count: int, pad: int) -> np.ndarray:
    """Decode ``count`` vectors, one after the other, from a 0/1 bit array holding whole periods,
    each followed by ``pad`` bits (the packing pad); the vector count wraps at ``s.vectors``."""
    L, k = s.lanes, s.k
    cb = np.array(s.codebook + (0,), dtype=np.int64)
    weights = 1 << np.arange(k)
    out = np.zeros((count, L), dtype=np.int64)
    pos = 0
    for n in range(count):
        if s.fmt == "bitmap":
            mask = bits[pos:pos + L].astype(bool)
            pos += L
        else:
            mask = np.ones(L, dtype=bool)
        m = int(mask.sum())
        idx = bits[pos:pos + k * m].reshape(m, k).astype(np.int64) @ weights
        out[n, mask] = cb[idx]
        pos += k * m
        if n % s.vectors == s.vectors - 1:
            pos += pad
    return out


@dataclass(frozen=True)
class Pace:
    """Result of :func:`pace`: the decoder's steady state with an always-ready consumer."""
    full_rate: bool          # the steady-state loop emits a vector every cycle
    loop_cycles: int         # cycles of the steady-state loop
    loop_vectors: int        # vectors emitted in it
    warmup_stalls: int       # cycles without a vector before the loop (after reset)


def _vector_need(stream: WeightStream, pad: int) -> list[int]:
    need = list(stream.vector_bits)
    need[-1] += pad         # the period's last vector also drops the pad bits
    return need


class _DecoderModel:
    """The decoder's registered state and its per-cycle rule (always-ready consumer)."""

    def __init__(self, need, W, C):
        self.need, self.W, self.C = need, W, C
        self.count = self.inflight = self.vidx = 0

    def step(self) -> bool:
        """One cycle; True when the head vector was decoded (the vector index advanced)."""
        W = self.W
        rd = self.count + self.inflight * W + W <= self.C
        n = self.need[self.vidx]
        emit = self.count >= n
        self.count += self.inflight * W - (n if emit else 0)
        self.inflight = int(rd)
        if emit:
            self.vidx = (self.vidx + 1) % len(self.need)
        return emit


def pace(stream: WeightStream, word_bits: int, buffer_bits: int, *, max_periods: int = 1000) -> Pace:
    """Steady state of WeightDecoder with an always-ready consumer (its rules are in weight_decoder.py).

    Per cycle, from registered state (``count`` bits in the buffer, ``inflight`` = a word read last
    cycle arrives now): a read is issued iff ``count + inflight*W + W <= C``; the head vector is
    decoded iff ``count >= need`` (its bits, plus the pad for the period's last vector); then
    ``count += inflight*W - consumed``.  The state at a period's start is ``(count, inflight)`` (the
    read address follows from it), so the first repeated start state closes the steady-state loop."""
    W, C = word_bits, buffer_bits
    need = _vector_need(stream, (-stream.total_bits) % W)
    if C < max(need) + W:        # a vector could never be complete in the buffer
        return Pace(False, 0, 0, 0)
    dec = _DecoderModel(need, W, C)
    seen = {}
    cycle = emitted = stalls = 0
    while len(seen) < max_periods:
        state = (dec.count, dec.inflight)
        if state in seen:
            c0, e0, s0 = seen[state]
            return Pace(cycle - c0 == emitted - e0, cycle - c0, emitted - e0, s0)
        seen[state] = (cycle, emitted, stalls)
        for _ in range(len(need)):      # one period: until the last vector is decoded
            while not dec.step():
                cycle += 1
                stalls += 1
            cycle += 1
            emitted += 1
    return Pace(False, 0, 0, stalls)


def emit_schedule(stream: WeightStream, word_bits: int, buffer_bits: int, vectors: int) -> list[int]:
    """Cycle (from reset) in which each of the first ``vectors`` vectors is decoded, always-ready
    consumer; the hardware's ``o`` offers it ``WeightDecoder.STAGES`` cycles later (the head
    register, then the codebook read register)."""
    need = _vector_need(stream, (-stream.total_bits) % word_bits)
    dec = _DecoderModel(need, word_bits, buffer_bits)
    out, cycle = [], 0
    while len(out) < vectors:
        if dec.step():
            out.append(cycle)
        cycle += 1
        if cycle > 1000 * (vectors + 10):
            raise RuntimeError("decoder model makes no progress (buffer too small?)")
    return out


@dataclass(frozen=True)
class PackedWeights:
    """A weight stream packed into ``word_bits``-bit words, with the decoder's buffer size."""
    stream: WeightStream
    word_bits: int            # W: memory width
    buffer_bits: int          # C: the decoder's bit buffer (a ring of C / W word slots)
    words: tuple              # depth = len(words)
    pace: Pace

    @property
    def depth(self) -> int:
        return len(self.words)

    @property
    def pad_bits(self) -> int:
        return self.depth * self.word_bits - self.stream.total_bits

    @property
    def memory_bits(self) -> int:
        return self.depth * self.word_bits

    @property
    def bits_per_vector(self) -> float:
        return self.stream.total_bits / self.stream.vectors


def pack(stream: WeightStream, word_bits: int) -> tuple:
    """The period's bits in ``word_bits``-bit words (ints), LSB-first, the last word padded with zeros."""
    W = int(word_bits)
    depth = max(1, -(-stream.total_bits // W))
    bits = np.zeros(depth * W, dtype=np.uint8)
    bits[:stream.total_bits] = stream.bits
    return tuple(int.from_bytes(np.packbits(row, bitorder="little").tobytes(), "little")
                 for row in bits.reshape(depth, W))


def decode_words(packed: PackedWeights, vectors: int) -> np.ndarray:
    """Reference decoder from the memory words: the first ``vectors`` dense vectors the decoder
    emits, reading the memory circularly (the expected output of the hardware, wraps included)."""
    s, W = packed.stream, packed.word_bits
    periods = -(-vectors // s.vectors)
    nbytes = -(-W // 8)
    period = np.concatenate([np.unpackbits(np.frombuffer(int(w).to_bytes(nbytes, "little"), dtype=np.uint8),
                                           bitorder="little")[:W] for w in packed.words])
    return _decode_bits(np.tile(period, periods), s, vectors, packed.pad_bits)


def _min_slots(stream: WeightStream, W: int, lo: int, hi: int):
    """Fewest word slots n in [lo, hi] (buffer C = n*W) at which the decoder keeps full rate
    (None if even hi does not); binary search, the result checked again exactly."""
    if not pace(stream, W, hi * W).full_rate:
        return None
    while lo < hi:
        mid = (lo + hi) // 2
        if pace(stream, W, mid * W).full_rate:
            hi = mid
        else:
            lo = mid + 1
    return hi


def _word_widths(stream: WeightStream, lo: int, hi: int, board) -> list[int]:
    """Word widths to try, in order: narrowest first; with a ``board`` (registry name), the widths
    whose word memory takes the fewest of its block RAMs first (ties: narrowest).

    A stream's narrowest full-rate width rarely tiles the block RAM well (e.g. 65 bits x 20,471
    words: 80 Tang Mega BSRAMs in 36-bit columns, 71 bits: 74).  Only widths up to twice the
    narrowest are considered (the decoder's ring grows with W), and a memory shallow enough to
    stay in logic (WeightDecoder.ROM_LOGIC_DEPTH) keeps the narrowest width."""
    widths = list(range(lo, hi + 1))
    if board is None:
        return widths
    from ..hw.weight_decoder import WeightDecoder
    from ..plan.resources import blocks_for
    P = stream.total_bits

    def blocks(W):
        depth = max(1, -(-P // W))
        return 0 if depth <= WeightDecoder.ROM_LOGIC_DEPTH else blocks_for(W, depth, board)
    if blocks(lo) == 0:
        return widths
    first = sorted(range(lo, min(hi, 2 * lo) + 1), key=lambda W: (blocks(W), W))
    return first + widths[len(first):]      # the rest of the range, narrowest first


def choose_layout(stream: WeightStream, *, word_bits: int | None = None,
                  max_word_bits: int | None = None, board=None) -> PackedWeights:
    """The narrowest memory word ``W`` (or the given ``word_bits``; with a ``board``, the one whose
    memory takes the fewest of its block RAMs, :func:`_word_widths`) and the smallest bit buffer
    ``C`` at which the decoder provably emits one vector per cycle in steady state (:func:`pace`).

    ``W`` starts at the mean bits per vector (a word per cycle at most) and grows; ``C`` is searched
    in whole words (the decoder's buffer is a ring of word slots) between the period's largest
    vector plus a word (the least that can work) and that plus 4 words."""
    V, P = stream.vectors, stream.total_bits
    top = max_word_bits or max(stream.max_vector_bits, 1) * 2 + 64
    widths = [int(word_bits)] if word_bits else _word_widths(stream, max(1, -(-P // V)), top, board)
    for W in widths:
        lo = -(-max(_vector_need(stream, (-P) % W)) // W) + 1
        n = _min_slots(stream, W, lo, lo + 4)
        if n is not None:
            C = n * W
            pc = pace(stream, W, C)
            assert pc.full_rate
            return PackedWeights(stream, W, C, pack(stream, W), pc)
    raise UserError(f"no memory width up to {top} bits lets the weight decoder keep one vector per "
                    f"cycle ({V} vectors, {P} bits per period); this should not happen: report it")


def encode_for_mvu(weights, codebook, *, k: int, pe: int, simd: int, fmt: str = "bitmap",
                   word_bits: int | None = None, board=None) -> PackedWeights:
    """Dense (O, N) integer weights -> the packed, decodable stream an MVU with this PE/SIMD reads.

    ``fmt``: "bitmap", "dense-index" or "auto" (the one with fewer bits)."""
    vec = mvu_vectors(weights, pe, simd)
    if fmt == "auto":
        streams = [encode_stream(vec, codebook, k, "bitmap")]
        if set(np.unique(vec).tolist()) <= set(int(c) for c in codebook):   # 0 needs an entry too
            streams.append(encode_stream(vec, codebook, k, "dense-index"))
        s = min(streams, key=lambda st: st.total_bits)
    else:
        s = encode_stream(vec, codebook, k, fmt)
    return choose_layout(s, word_bits=word_bits, board=board)


def encode_model(model, folding, *, fmt: str = "auto", codebooks: dict | None = None,
                 k: int | None = None, layers=None, board=None) -> dict:
    """{conv name: PackedWeights} for ``layers`` (default: every conv) of an integer model at a
    folding, ready for ``squeezehw.plan.lowering.lower(..., weight_codes=...)`` / ``simulate_frames(weight_codes=...)``.

    ``codebooks``: {conv name: entries} (the quantizer's); default: the layer's distinct weight
    values (0 left out for bitmap, where it is implicit).  ``k``: index bits; default: the fewest
    that index the codebook.  ``fmt="auto"``: per layer the format with fewer bits.  ``board``: the
    registry name whose block RAM the word memories are shaped for (:func:`choose_layout`)."""
    if fmt not in FORMATS + ("auto",):
        raise UserError(f"weight format {fmt!r} must be one of {', '.join(FORMATS + ('auto',))}")
    convs = {c.name: c for c in model.convs()}
    out = {}
    for name in (list(convs) if layers is None else list(layers)):
        if name not in convs:
            raise UserError(f"{name} is not a conv of {model.name}; its convs are {', '.join(convs)}")
        q = convs[name]
        w = np.asarray(q.weight).transpose(0, 2, 3, 1).reshape(q.out_ch, -1)     # the MVU's column order
        fold = folding[name]
        candidates = []
        for f in (FORMATS if fmt == "auto" else (fmt,)):
            if codebooks and name in codebooks:
                cb = [int(v) for v in codebooks[name]]
            else:
                cb = sorted(set(np.unique(w).tolist()) - ({0} if f == "bitmap" else set()))
            candidates.append(encode_for_mvu(w, cb, k=k or max(1, (len(cb) - 1).bit_length()),
                                             pe=fold.pe, simd=fold.simd, fmt=f, board=board))
        out[name] = min(candidates, key=lambda p: p.stream.total_bits)
    return out


def model_weight_codes(model, folding, storage: str = "auto", board=None) -> dict:
    """{conv name: PackedWeights} for the convs of an integer model that carry a per-layer codebook
    (``squeezehw quantize --codebook``): their own entries, index width and encoding, packed for
    the MVU at this folding.  A per-output-channel codebook (Deep Compression v1.0's conv1) is left
    dense: the decoder holds one codebook per layer.  ``storage="dense"`` (``--weights dense``):
    none, every weight in a dense memory.  ``board``: the registry name the design is built for
    (its block RAM shapes the word memories, :func:`choose_layout`); None: the narrowest words."""
    if storage == "dense":
        return {}
    codes = {}
    for q in model.convs():
        if q.codebook is None or len(q.codebook) != 1:
            continue
        entries = [int(v) for v in np.asarray(q.codebook)[0][:int(np.asarray(q.codebook_size)[0])]]
        fmt = q.encoding if q.encoding in FORMATS else "auto"
        codes.update(encode_model(model, folding, fmt=fmt, codebooks={q.name: entries}, k=q.index_bits,
                                  layers=[q.name], board=board))
    return codes
