"""WeightDecoder: compressed weight memory -> one dense ``PE x SIMD`` weight vector per cycle.

Reads a :class:`squeezehw.quant.sparse_weights.PackedWeights` stream (format in sparse_weights.py:
"dense-index" or "bitmap" + codebook indices, LSB-first, in the MVU's vector order) from a
synchronous-read ``Memory`` (block RAM), circularly: the MVU replays the same vectors for every
output pixel, so after the period's last word the address wraps to 0 and prefetching goes on
across the wrap (no bubble per pixel).

Gearbox: a ring of ``C = n*W`` bits (``n`` word slots); stream bit ``s`` lives at ``ring[s mod C]``,
so an arriving word is written whole into the next slot (no shifter on the write side) and the
head vector is read through one rotator (``head = ring`` rotated by ``rptr``, only as many bits as
the stream's largest vector).  ``count`` bits are buffered and unconsumed.  Per cycle, from
registered state:

- *read*: a word is requested iff ``count + inflight*W + W <= C`` (``inflight``: the word requested
  last cycle arrives from the memory now), so a word never lands on unconsumed bits;
- *decode*: the head vector needs ``need`` bits (dense-index: ``L*k``; bitmap: ``L + k*popcount``
  of its ``L`` mask bits, from registers refilled from a ROM of the period's popcounts, so
  the read pointer's update does not wait for the popcount), plus the pad bits after the period's last vector; it is
  decoded iff ``count >= need`` and the output stage advances;
- ``rptr <= (rptr + consumed) mod C``, ``count <= count - consumed + inflight*W``.

Output stages: the head window is registered (``head_q``); its mask and per-lane index muxes
address the codebook, a ROM (``Memory``, a copy per lane pair) with one synchronous read port per
lane; its read register is the output register (``o.payload``: lane ``j`` =
``lane_bits``-bit two's complement in bits ``j*lane_bits``, the MVU's weight word layout; a bitmap
lane whose mask bit is 0 reads 0).  Both stages advance together when ``o`` is empty or taken, so
``o.valid`` is a register and ``o.payload`` holds while ``o`` waits (read ports' enable = advance).

``W`` and ``C`` come from :func:`squeezehw.quant.sparse_weights.choose_layout`, whose cycle model is
exactly these rules: with an always-ready consumer the decoder then emits one vector per cycle in
steady state, its first vector after ``latency`` cycles from reset (a one-off start-up).  A
consumer that waits only lets the buffer fill further.
"""
from __future__ import annotations

from math import gcd

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import Out

from ..errors import UserError
from ..frontend.ir import bits_for_signed
from ..quant.sparse_weights import PackedWeights, _vector_need, decode_stream

__all__ = ["WeightDecoder"]


class WeightDecoder(wiring.Component):
    """Port ``o``: stream of ``unsigned(lanes * lane_bits)`` dense weight vectors (never ends).

    ``packed``: the encoded weights (:class:`PackedWeights`).  ``lane_bits``: output lane width
    (default: the codebook's entry width); every weight the stream uses must fit it."""

    @staticmethod
    def stages_for(fmt: str) -> int:
        """Cycles from a vector's decode (the cycle model's emission) to its beat on ``o``: the head
        register, (bitmap: the registered mask and lane indices,) the codebook read register."""
        return 3 if fmt == "bitmap" else 2

    @classmethod
    def latency_for(cls, fmt: str) -> int:
        """Cycles from reset to the first vector on ``o``: word read, written into the ring, then
        the stages; plus the cycle model's warm-up stalls if the first vector needs more words."""
        return 2 + cls.stages_for(fmt)
    # a word memory this shallow became logic in Yosys synth_ecp5 (62 words did, 256 did not)
    ROM_LOGIC_DEPTH = 64

    def __init__(self, packed: PackedWeights, *, lane_bits: int | None = None, name: str = "weight_decoder"):
        if not isinstance(packed, PackedWeights):
            self._MustUse__silence = True
            raise UserError(f"{name}: expected PackedWeights (squeezehw.quant.sparse_weights.encode_for_mvu), "
                            f"got {type(packed).__name__}")
        s = packed.stream
        self.name = name
        self.packed = packed
        self.fmt, self.k, self.lanes = s.fmt, s.k, s.lanes
        self.lane_bits = int(lane_bits or s.entry_bits)
        # entries are stored in lane_bits (an unused, wider entry is never read); the used ones must fit
        used = np.unique(decode_stream(s))
        if bits_for_signed(min(int(used.min()), 0), max(int(used.max()), 0)) > self.lane_bits:
            self._MustUse__silence = True
            raise UserError(f"{name}: weights {used.min()}..{used.max()} do not fit {self.lane_bits}-bit lanes")
        self.word_bits, self.buffer_bits, self.depth = packed.word_bits, packed.buffer_bits, packed.depth
        self.vectors = s.vectors
        self.need = _vector_need(s, packed.pad_bits)
        # bitmap: set mask bits per vector (its length is L + k * popcount, + the pad for the last)
        self.popcounts = [(b - self.lanes) // self.k for b in s.vector_bits] if self.fmt == "bitmap" else []
        # their lookahead ROM: as many popcounts per row as fill 36 bits (the widest row of an
        # 18-Kbit block RAM), ``popcount_rows`` rows
        self.popcount_bits = max(1, max(self.popcounts, default=0).bit_length())
        self.pops_per_word = max(1, min(36 // self.popcount_bits, self.vectors))
        self.popcount_rows = -(-self.vectors // self.pops_per_word)
        if self.buffer_bits % self.word_bits or self.buffer_bits < max(self.need) + self.word_bits:
            self._MustUse__silence = True
            raise UserError(f"{name}: buffer of {self.buffer_bits} bits must be whole {self.word_bits}-bit "
                            f"words and hold the largest vector ({max(self.need)} bits) plus a word; "
                            "use sparse_weights.choose_layout")
        # the bits the decode looks at: the largest vector of this stream (pad included)
        self.window_bits = max(self.need)
        # every read-pointer step is a multiple of this (the pointer's low bits stay 0)
        steps = [self.lanes * self.k, packed.pad_bits, self.buffer_bits] if self.fmt == "dense-index" else \
            [self.lanes, self.k, packed.pad_bits, self.buffer_bits]
        self.rptr_step = gcd(*steps)
        self.codebook_depth = 1 << self.k
        self.stages = self.stages_for(self.fmt)
        self.latency = self.latency_for(self.fmt)
        super().__init__({"o": Out(stream.Signature(unsigned(self.lanes * self.lane_bits)))})

    # --- resource figures (cost model, compared with Yosys in benchmarks/decoder_resources.py) ---
    def estimate(self, family: str = "ecp5") -> dict:
        """First-order LUT4 / FF / block-RAM estimate from the parameters; its coefficients were set
        against Yosys ``synth_ecp5 -abc9`` on four of benchmarks/decoder_resources.py's sizes, the
        fifth held out (the comparison is in docs/compression_decoder.md).

        FF: the ring, counters, the mask and the codebook read registers.  LUT4: the head rotator
        (``window`` bits through log2(C/step) stages, stage b keeping ``window + 2**b - 1`` bits:
        measured 2 LUT4 per bit and stage for bitmap, 1 for dense-index, whose pointer moves by
        whole vectors), the bitmap's per-lane index muxes (lane j picks one
        of j+1 k-bit fields: a LUT4 per input bit) and prefix popcounts, the zeroing of masked
        lanes, the codebook ROM in logic (per lane and bit a LUT4 per 16 entries and one per 64 for
        the wider mux) and a word memory (and the bitmap's popcount ROM) of at most
        ``ROM_LOGIC_DEPTH`` entries in logic.  Block RAM: those memories in the family's blocks
        when deeper (Yosys mapped 64 words to logic, 128
        and more to DP16KD; it kept the codebooks, up to 256 entries, in logic)."""
        from math import ceil

        from ..plan.resources import blocks_for
        L, k, C, W, B = self.lanes, self.k, self.buffer_bits, self.word_bits, self.lane_bits
        bitmap = self.fmt == "bitmap"
        bits = lambda n: max(1, (n - 1).bit_length())      # noqa: E731  (a counter over n values)
        ff = C + bits(C + 1) + bits(C) + bits(C // W) + 1 + bits(self.depth) + bits(self.vectors) + 1
        ff += self.window_bits + 1 + L * B                                # head, output stage
        if bitmap:
            ff += 2 * L + L * k + 1 + 2 * max(self.need).bit_length()     # masks, indices, lengths
            ff += self.pops_per_word * self.popcount_bits + bits(self.popcount_rows)  # popcount row
        stages = bits(C // self.rptr_step)                  # the pointer's low bits are constant
        lut = (2 if bitmap else 1) * (self.window_bits * stages + (1 << stages))
        if bitmap:
            lut += k * L * (L + 1) // 2 + L * bits(L + 1) + L * B
        d = self.codebook_depth
        lut += L * B * (ceil(d / 16) + d // 64)
        lut += 3 * bits(C + 1) + 2 * bits(self.depth) + bits(self.vectors) + 20     # counters, compares
        blocks = 0
        roms = [(W, self.depth)] + ([(self.pops_per_word * self.popcount_bits, self.popcount_rows)] if bitmap else [])
        for width, depth in roms:           # the words, and the bitmap's popcount ROM
            if depth <= self.ROM_LOGIC_DEPTH:
                lut += width * ceil(depth / 16)
            else:
                blocks += blocks_for(width, depth, family)
        return {"lut": int(lut), "ff": int(ff), "block_ram": blocks}

    # --- hardware ----------------------------------------------------------------------------
    def elaborate(self, platform):
        m = Module()
        L, k, C, W, D, V = self.lanes, self.k, self.buffer_bits, self.word_bits, self.depth, self.vectors
        B = self.lane_bits
        bitmap = self.fmt == "bitmap"
        pad = self.packed.pad_bits
        slots = C // W
        window = self.window_bits

        words = m.submodules.words = Memory(shape=unsigned(W), depth=D, init=list(self.packed.words))
        rd_port = words.read_port()
        raddr = Signal(range(D), name="raddr")
        inflight = Signal(name="inflight")               # a word requested last cycle arrives now
        count = Signal(range(C + 1), name="count")       # buffered bits not yet consumed
        ring = Signal(C, name="ring", reset_less=True)   # stream bit s lives at ring[s mod C]
        wslot = Signal(range(slots), name="wslot")       # slot the arriving word goes to
        rptr = Signal(range(C), name="rptr")             # ring position of the head vector's bit 0
        vidx = Signal(range(V), name="vidx")

        # ---- read: only from registered state; never overwrites unconsumed bits ----------------
        rd = Signal()
        m.d.comb += [rd.eq(count + Mux(inflight, W, 0) + W <= C),
                     rd_port.addr.eq(raddr), rd_port.en.eq(rd)]
        with m.If(rd):
            m.d.sync += raddr.eq(Mux(raddr == D - 1, 0, raddr + 1))
        m.d.sync += inflight.eq(rd)
        # the arriving word fills the slot after the buffered bits (written totals are whole words)
        with m.If(inflight):
            with m.Switch(wslot):
                for n in range(slots):
                    with m.Case(n):
                        m.d.sync += ring[n * W:(n + 1) * W].eq(rd_port.data)
            m.d.sync += wslot.eq(Mux(wslot == slots - 1, 0, wslot + 1))

        # ---- the head window: ring rotated by rptr, as many bits as the largest vector ---------
        # log-depth rotator, most significant shift first so each stage only keeps the bits the
        # later (smaller) shifts can still reach
        x = Cat(ring, ring[:window])
        for b in reversed(range(len(rptr))):
            keep = window + (1 << b) - 1
            x = Mux(rptr[b], x[1 << b:], x)[:keep]
        head = Signal(window, name="head")
        m.d.comb += head.eq(x)
        # the decoded vector is registered (head_q) before its mask and index muxes: rotator and
        # decode in one cycle set the ECP5 Fmax at 76 MHz (8 lanes)
        advance = ~self.o.valid | self.o.ready          # the output stages move on this cycle
        head_q = Signal(window, name="head_q", reset_less=True)
        head_valid = Signal(name="head_valid")

        # ---- the head vector's length; decode from the registered head ----------------------
        last = vidx == V - 1
        if bitmap:
            mask = head_q[:L]
            prefix = []                                  # set mask bits below lane j
            run = Const(0, 1)
            for j in range(L):
                prefix.append(run)
                run = (run + mask[j])[:max(1, (j + 1).bit_length())]
            # The vector's length is not taken from its mask: rptr -> rotator -> popcount -> rptr
            # was the critical loop (ECP5: 47 MHz at 8 lanes).  The lengths are known at build
            # time: ``need`` is a register holding the head vector's length and ``count_after``
            # the next vector's popcount, refilled from a ROM of popcounts that is read two
            # vectors ahead (entry a = popcount of vector a + 2), so the ROM's slow block-RAM
            # output only feeds a register (it fed the compare and set 58.6 MHz at 16 lanes).
            # The ROM holds popcounts, not lengths (L + k*popcount, + the pad after the period's
            # last vector): about 40 % fewer bits (DC SqueezeNet v1.0 on the Tang Mega: 50 of the
            # BSRAMs were these ROMs); the length is formed on the way from ``count_after`` to ``need``.
            # ``pops_per_word`` popcounts share a ROM word (a whole 36-bit block RAM row rather
            # than a 4- or 5-bit one: 13 -> 8 Tang Mega BSRAMs for the 25,600 vectors of DC v1.0's
            # classifier); ``cur`` holds the rest of the current word, the next one waits on the
            # read port (addressed a cycle ahead, as ``vidx_next`` did for one popcount a word).
            pops, n, pb = self.popcounts, self.pops_per_word, self.popcount_bits
            ahead = [pops[(a + 2) % V] for a in range(V)]      # entry a: popcount of vector a + 2
            rows = [sum(v << (pb * t) for t, v in enumerate(ahead[j * n:(j + 1) * n]))
                    for j in range(self.popcount_rows)]
            sizes = m.submodules.sizes = Memory(shape=unsigned(n * pb), depth=len(rows), init=rows)
            size_port = sizes.read_port()
            cur = Signal(n * pb, name="pop_word", init=rows[0])
            slot = Signal(range(n), name="pop_slot")
            wnext = Signal(range(len(rows)), name="pop_row_next", init=1 % len(rows))
            need = Signal(max(self.need).bit_length(), name="need", init=self.need[0])
            count_after = Signal(pb, name="count_after", init=pops[1 % V])
            # lane j's index: the prefix_j-th k-bit field after the mask (fields beyond the window
            # belong to no vector of this stream: the window holds the largest one)
            idx = []
            for j in range(L):
                fields = [head_q[L + k * c:L + k * c + k] if L + k * c + k <= window else Const(0, k)
                          for c in range(j + 1)]
                idx.append(Cat(*fields).word_select(prefix[j], k) if j else fields[0])
        else:
            need = Mux(last, L * k + pad, L * k)
            idx = [head_q[k * j:k * j + k] for j in range(L)]

        have = Signal()
        m.d.comb += have.eq(count >= need)
        emit = Signal()
        m.d.comb += emit.eq(have & advance)
        consumed = Signal(range(C + 1), name="consumed")
        m.d.comb += consumed.eq(Mux(emit, need, 0))
        m.d.sync += count.eq(count - consumed + Mux(inflight, W, 0))
        nxt = Signal(range(2 * C), name="rptr_next")
        m.d.comb += nxt.eq(rptr + consumed)
        m.d.sync += rptr.eq(Mux(nxt >= C, nxt - C, nxt))
        vidx_next = Mux(emit, Mux(last, 0, vidx + 1), vidx)
        m.d.sync += vidx.eq(vidx_next)
        if bitmap:
            # at an emit the popcount of vector vidx + 2 leaves ``cur``; the row ends after its
            # n-th entry or the period's last vector (the last row may be partial)
            row_end = (slot == n - 1) | last
            load = emit & row_end
            wnext_next = Mux(load, Mux(wnext == len(rows) - 1, 0, wnext + 1), wnext)
            m.d.sync += wnext.eq(wnext_next)
            m.d.comb += size_port.addr.eq(wnext_next)   # so the port holds row wnext next cycle
            # the vector after the head is the period's last one: its length includes the pad
            after_is_last = vidx == (V - 2) % V
            with m.If(emit):
                m.d.sync += [need.eq(L + k * count_after + Mux(after_is_last, pad, 0)),
                             count_after.eq(cur[:pb])]
                with m.If(row_end):
                    m.d.sync += [cur.eq(size_port.data), slot.eq(0)]
                with m.Else():
                    m.d.sync += [cur.eq(cur >> pb), slot.eq(slot + 1)]

        if bitmap:
            # mask and lane indices registered before the codebook: head_q -> prefix popcount ->
            # index mux -> codebook ROM in one cycle set 88 MHz at 16 lanes, k = 6
            idx_q = [Signal(k, name=f"idx_q{j}", reset_less=True) for j in range(L)]
            mask_mid = Signal(L, name="mask_mid", reset_less=True)
            mid_valid = Signal(name="mid_valid")
            with m.If(advance):
                m.d.sync += [q.eq(v) for q, v in zip(idx_q, idx)]
                m.d.sync += [mask_mid.eq(mask), mid_valid.eq(head_valid)]
            idx, mask, pre_valid = idx_q, mask_mid, mid_valid
        else:
            pre_valid = head_valid
        # ---- output stage: codebook ROM, one read port per lane; its register drives o ----------
        entries = [v & ((1 << B) - 1) for v in self.packed.stream.codebook]
        entries += [0] * (self.codebook_depth - len(entries))
        lanes_out = []
        for j in range(L):
            # a copy per lane pair: a block RAM has two read ports (and Yosys's memory mapper
            # failed on one ROM with 16 read ports)
            if j % 2 == 0:
                book = m.submodules[f"codebook{j // 2}"] = Memory(shape=unsigned(B), depth=self.codebook_depth,
                                                                 init=entries)
            p = book.read_port()
            m.d.comb += [p.addr.eq(idx[j]), p.en.eq(advance)]
            lanes_out.append(p.data)
        with m.If(advance):
            m.d.sync += [head_q.eq(head), head_valid.eq(have), self.o.valid.eq(pre_valid)]
        if bitmap:
            mask_q = Signal(L, name="mask_q", reset_less=True)
            with m.If(advance):
                m.d.sync += mask_q.eq(mask)
            lanes_out = [Mux(mask_q[j], lanes_out[j], 0) for j in range(L)]
        m.d.comb += self.o.payload.eq(Cat(*lanes_out))
        return m
