"""Global sum pool + argmax: the head's per-class sums (docs/numerics.md, "Head").

Input: the head conv's uint8 outputs, ``lanes`` channels per beat, ``channels/lanes`` beats per
pixel, ``pixels`` pixels per frame.  Output, per frame: ``channels`` beats of one logit each
(class 0 first), then one beat with the argmax class index (the lowest index wins a tie).

Accumulation: the running sums live in a memory (width ``lanes*logit_bits``, depth
``channels/lanes``), updated read-modify-write: the read is issued when a beat is accepted, its
data registered, and the sum written two cycles after the read.  The two writes a read cannot
see (same address when ``channels/lanes`` is 1 or 2) are forwarded from registers, so one beat
per cycle is accepted for every shape.

Back-to-back frames: the last pixel's final sums are written into a drain FIFO (depth
``channels/lanes`` words) instead of being read back, so the sum memory is free at once and the
next frame is accepted *while* the previous one drains.  The input only waits when a frame's last
pixel would overflow the drain FIFO (the frame before it still undrained).
"""
from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..errors import UserError
from .errors import FoldingError
from .mvu import divisors

__all__ = ["GlobalSumArgmax"]


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"global pool: {name} must be a positive integer, got {value!r}")
    return value


class GlobalSumArgmax(wiring.Component):
    """Per-channel sums over ``pixels`` pixels, then logits and the argmax class.  See module doc."""

    def __init__(self, *, channels, lanes, pixels, logit_bits):
        try:
            self.channels = _positive_int("channels", channels)
            self.lanes = _positive_int("lanes", lanes)
            self.pixels = _positive_int("pixels", pixels)
            self.logit_bits = _positive_int("logit_bits", logit_bits)
            if channels % lanes:
                raise FoldingError(f"global pool: lanes={lanes} does not divide {channels} channels; "
                                   f"choose one of {divisors(channels)}")
            need = (255 * pixels).bit_length()
            if logit_bits < need:
                raise UserError(f"global pool: logit_bits={logit_bits} cannot hold a sum of {pixels} "
                                f"uint8 values (up to {255 * pixels}); use logit_bits >= {need}")
        except UserError:
            self._MustUse__silence = True
            raise
        self.beats = channels // lanes
        self.class_bits = max(1, (channels - 1).bit_length())
        self.out_bits = max(logit_bits, self.class_bits)
        # SyncFIFOBuffered holds `depth` words only for depth >= 3 (at depth 2 a write one cycle
        # after a write into the empty FIFO is refused), and the credit count assumes it holds them
        self.drain_depth = max(3, self.beats)
        self.beats_per_frame_out = channels + 1
        super().__init__({
            "i": In(stream.Signature(unsigned(8 * lanes))),
            "o": Out(stream.Signature(unsigned(self.out_bits))),
        })

    def elaborate(self, platform):
        m = Module()
        L, B, P, LB = self.lanes, self.beats, self.pixels, self.logit_bits
        W = L * LB

        sums = m.submodules.sums = Memory(shape=unsigned(W), depth=B, init=[])
        rd = sums.read_port()
        wr = sums.write_port()
        drain = m.submodules.drain = SyncFIFOBuffered(width=W, depth=self.drain_depth)

        # ---- accept -------------------------------------------------------------------------
        beat = Signal(range(B))
        pix = Signal(range(P))
        last_pix = pix == P - 1
        # words committed to the drain FIFO (accepted last-pixel beats) and not yet read out;
        # counted at acceptance so that i.ready depends on registered state only
        committed = Signal(range(self.drain_depth + 1))
        m.d.comb += self.i.ready.eq(~last_pix | (committed < self.drain_depth))
        accept = self.i.valid & self.i.ready
        with m.If(accept):
            m.d.sync += beat.eq(Mux(beat == B - 1, 0, beat + 1))
            with m.If(beat == B - 1):
                m.d.sync += pix.eq(Mux(last_pix, 0, pix + 1))
        m.d.comb += rd.addr.eq(beat)

        a_valid, a_first, a_last = Signal(), Signal(), Signal()
        a_addr = Signal(range(B))
        a_x = Signal(8 * L)
        m.d.sync += [a_valid.eq(accept), a_first.eq(pix == 0), a_last.eq(last_pix),
                     a_addr.eq(beat), a_x.eq(self.i.payload)]

        # ---- register the read data (block RAM clock-to-out is slow) --------------------------
        b_valid, b_first, b_last = Signal(), Signal(), Signal()
        b_addr = Signal(range(B))
        b_x = Signal(8 * L)
        b_old = Signal(W)
        m.d.sync += [b_valid.eq(a_valid), b_first.eq(a_first), b_last.eq(a_last),
                     b_addr.eq(a_addr), b_x.eq(a_x), b_old.eq(rd.data)]

        # ---- add and write back, two cycles after the read -------------------------------------
        # The read (issued at accept, cycle t) missed the writes of cycles t and t+1; they are
        # held in fw1 (t+1, newest) and fw2 (t), and override the read value on an address match.
        fw1_valid, fw2_valid = Signal(), Signal()
        fw1_addr, fw2_addr = Signal(range(B)), Signal(range(B))
        fw1_data, fw2_data = Signal(W), Signal(W)
        # the address matches are registered a cycle ahead: next cycle fw1 is this cycle's b and
        # fw2 this cycle's fw1, while b is this cycle's a (address compare -> forwarding mux ->
        # adder was the ULX3S critical path at 96 MHz)
        hit1, hit2 = Signal(), Signal()
        m.d.sync += [hit1.eq(b_valid & (b_addr == a_addr)), hit2.eq(fw1_valid & (fw1_addr == a_addr))]
        old = Mux(hit1, fw1_data, Mux(hit2, fw2_data, b_old))
        new = Signal(W)
        for k in range(L):
            base = Mux(b_first, 0, old[k * LB:(k + 1) * LB])
            m.d.comb += new[k * LB:(k + 1) * LB].eq(base + b_x[8 * k:8 * k + 8])
        m.d.comb += [wr.addr.eq(b_addr), wr.data.eq(new), wr.en.eq(b_valid)]
        m.d.sync += [fw1_valid.eq(b_valid), fw1_addr.eq(b_addr), fw1_data.eq(new),
                     fw2_valid.eq(fw1_valid), fw2_addr.eq(fw1_addr), fw2_data.eq(fw1_data)]
        m.d.comb += [drain.w_en.eq(b_valid & b_last), drain.w_data.eq(new)]

        # ---- drain: logits one per beat, then the class ---------------------------------------
        word = Signal(W)
        have = Signal()
        lane = Signal(range(L))
        k = Signal(range(self.channels))
        best = Signal(LB)
        best_k = Signal(range(self.channels))
        class_phase = Signal()
        load = ~self.o.valid | self.o.ready          # the output register is free this cycle
        emit_logit = load & ~class_phase & have
        word_done = emit_logit & (lane == L - 1)
        take_word = drain.r_rdy & (~have | word_done)
        m.d.comb += drain.r_en.eq(take_word)

        with m.If(load):
            m.d.sync += self.o.valid.eq(class_phase | have)
        with m.If(load & class_phase):
            m.d.sync += [self.o.payload.eq(best_k), class_phase.eq(0)]
        with m.If(emit_logit):
            v = word[:LB]
            m.d.sync += [self.o.payload.eq(v), word.eq(word >> LB),
                         lane.eq(Mux(lane == L - 1, 0, lane + 1)),
                         k.eq(Mux(k == self.channels - 1, 0, k + 1))]
            # strictly greater: the lowest index keeps a tie
            with m.If((k == 0) | (v > best)):
                m.d.sync += [best.eq(v), best_k.eq(k)]
            with m.If(k == self.channels - 1):
                m.d.sync += class_phase.eq(1)
            with m.If(word_done):
                m.d.sync += have.eq(0)
        with m.If(take_word):
            m.d.sync += [word.eq(drain.r_data), have.eq(1)]

        taken_words = take_word
        committed_in = accept & last_pix
        with m.If(committed_in & ~taken_words):
            m.d.sync += committed.eq(committed + 1)
        with m.Elif(~committed_in & taken_words):
            m.d.sync += committed.eq(committed - 1)
        return m
