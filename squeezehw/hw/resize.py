"""Resize: a stream width converter (gearbox) between a producer with ``in_lanes`` lanes and a
consumer with ``out_lanes`` lanes, for pixels of ``channels`` 8-bit channels.

Both lane counts divide ``channels``, so pixel boundaries fall on beat boundaries on both sides and
the converter only has to preserve the byte order (channel order, pixel after pixel, frame after
frame); it needs no pixel counter.  Any ratio works (e.g. 4 -> 6 lanes for 12 channels).

Integer ratios (the common case: ``out = k*in`` or ``in = k*out``) use a cheap dedicated design:
widening collects ``k-1`` beats in a register and forms the wide beat with the k-th (output
register ``out`` lanes); narrowing loads a wide beat into a register and shifts a slice out per
cycle.  No barrel shifter: the general design below cost 536 LUT4 for 1 -> 8 lanes on ECP5, the
widening one a few dozen.

General ratios, when a ring of ``lcm(in_lanes, out_lanes)`` lanes (or a multiple) is affordable
(at most 4x the shift buffer below, and a read mux no wider than the shift design's insert mux,
e.g. 8 -> 9 lanes on the 72-lane 3x3 vector of 8 channels; not 40 -> 3):
a ring of ``ring_lanes`` lanes that both lane counts divide, so a beat is always written whole
into one of ``ring/in_lanes`` fixed slots and read whole from one of ``ring/out_lanes`` slots:
no barrel shifter, only a slot-select mux on the read side (the shift design's count -> shifter
-> buffer path was the ULX3S critical path at 97 MHz for 8 -> 9).  It holds at least
``in + out + min(in, out) - 1`` lanes, enough for one beat per cycle on the narrow side with
registered flags.

Other general ratios: a shift buffer of ``in_lanes + 2*out_lanes - 1`` lanes holding ``count`` valid lanes (lane 0
oldest).  ``o`` is valid while ``count >= out_lanes`` (never depends on ready); an input beat is
accepted when it fits even if nothing leaves this cycle (``i.ready`` depends on registered state
only, so a consumer's ready does not ripple through the converter), and is written just above the
lanes held; this cycle's output beat, if taken, is shifted out after.  The ``out_lanes`` beyond
``in + out - 1`` keep one beat per cycle on the narrow side under that rule.  Identity (a wire) when
``in_lanes == out_lanes``.
"""
from __future__ import annotations

from functools import reduce
from math import gcd, lcm
from operator import or_

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .errors import FoldingError

__all__ = ["Resize"]


class Resize(wiring.Component):
    """Ports: ``i`` (in stream, unsigned(8*in_lanes)), ``o`` (out stream, unsigned(8*out_lanes)).

    Attributes: ``ring`` (the general ratio uses the slot ring), ``cap_lanes`` (lanes held at
    most), ``memory_bits`` (register bits of the ring or shift buffer, 0 for identity),
    ``latency`` (cycles from the input beat completing an output beat to that beat being valid:
    1, 0 for identity).
    """

    def __init__(self, *, in_lanes: int, out_lanes: int, channels: int):
        if not isinstance(channels, int) or channels < 1:
            raise FoldingError(f"Resize: channels={channels!r} must be a positive integer")
        for name, v in (("in_lanes", in_lanes), ("out_lanes", out_lanes)):
            if not isinstance(v, int) or v < 1:
                raise FoldingError(f"Resize: {name}={v!r} must be a positive integer")
            if channels % v:
                divs = [d for d in range(1, channels + 1) if channels % d == 0]
                raise FoldingError(f"Resize: {name}={v} does not divide channels={channels}; "
                                   f"choose one of {divs}")
        self.in_lanes = in_lanes
        self.out_lanes = out_lanes
        self.channels = channels
        design, self.cap_lanes = self.design(in_lanes, out_lanes)
        self.identity, self.widen, self.narrow, self.ring = (design == d for d in
                                                             ("identity", "widen", "narrow", "ring"))
        self.memory_bits = 8 * self.cap_lanes
        self.latency = 0 if self.identity else 1
        super().__init__({
            "i": In(stream.Signature(8 * in_lanes)),
            "o": Out(stream.Signature(8 * out_lanes)),
        })

    @staticmethod
    def design(in_lanes: int, out_lanes: int) -> tuple[str, int]:
        """(design, lanes held at most) for a converter from ``in_lanes`` to ``out_lanes``: "identity",
        "widen", "narrow", "ring" or "shift" (module docstring)."""
        if in_lanes == out_lanes:
            return "identity", 0
        if out_lanes % in_lanes == 0:
            return "widen", 2 * out_lanes - in_lanes       # k-1 collected beats + the output beat
        if in_lanes % out_lanes == 0:
            return "narrow", in_lanes
        shift_lanes = in_lanes + 2 * out_lanes - 1
        period = lcm(in_lanes, out_lanes)
        ring_lanes = period * -(-(in_lanes + out_lanes + min(in_lanes, out_lanes) - 1) // period)
        # the ring's read mux has ring/out_lanes inputs per output lane, the shift design's
        # insert mux at most min(in_lanes, insert positions): the ring where its mux is no
        # wider (a 40 -> 3 ring had a 40:1 read mux over 960 flip-flops, the large ULX3S
        # member's critical path at 65.8 MHz; the shift design inserts at 6 positions there)
        if ring_lanes <= 4 * shift_lanes and ring_lanes // out_lanes <= min(in_lanes, shift_lanes - in_lanes + 1):
            return "ring", ring_lanes
        return "shift", shift_lanes

    def elaborate(self, platform):
        m = Module()
        if self.identity:
            m.d.comb += [
                self.o.payload.eq(self.i.payload),
                self.o.valid.eq(self.i.valid),
                self.i.ready.eq(self.o.ready),
            ]
            return m
        if self.widen:
            return self._widen(m)
        if self.narrow:
            return self._narrow(m)
        if self.ring:
            return self._ring(m)
        li, lo, cap = self.in_lanes, self.out_lanes, self.cap_lanes
        g = gcd(li, lo)  # the fill level is always a multiple of g lanes: shift in g-lane units
        buf = Signal(8 * cap, reset_less=True)     # data: only the fill level needs a reset
        count = Signal(range(cap // g + 1))  # valid lanes / g
        # valid and ready are registered flags computed from the next fill level, so neither the
        # consumer's logic nor this block's wide buffer clock enable waits on a comparator
        # (count -> compare -> pop -> buffer enable was the ULX3S critical path at 90 MHz)
        valid = Signal()
        ready = Signal(init=1)
        pop = Signal()
        m.d.comb += [
            self.o.valid.eq(valid),
            self.o.payload.eq(buf[:8 * lo]),
            pop.eq(valid & self.o.ready),
            # the fill level before this cycle's pop, so a consumer's ready does not ripple
            # through this block's arithmetic; the extra out_lanes of capacity keep one beat per cycle
            self.i.ready.eq(ready),
        ]
        push = self.i.valid & ready
        # Lanes at and above `count` are always zero, so the new beat can be OR-ed in at `count`
        # (a register), and this cycle's pop shifts the result.
        if g & (g - 1) == 0:                # a power of two: the bit offset count * 8g is wiring
            offset = count * (8 * g)
        else:
            # a running lane offset (= count * g) times 8, so no multiplier is built: Yosys maps
            # `count * 24` to a MULT18X18D that the cost model does not count
            lanes = Signal(range(cap + 1))
            m.d.sync += lanes.eq(lanes + Mux(push, li, 0) - Mux(pop, lo, 0))
            offset = lanes * 8
        inserted = (self.i.payload.as_unsigned() << offset)[:8 * cap]
        merged = Mux(push, buf | inserted, buf)
        m.d.sync += buf.eq(Mux(pop, merged >> (8 * lo), merged))
        self._fill_level(m, count, g, push, pop, valid, ready)
        return m

    def _fill_level(self, m, count, g, push, pop, valid, ready):
        """The registered ``valid``/``ready`` flags of the next fill level (and ``count``, lanes
        held / g, for the shift design; None for the ring, which needs no count).

        The fill level is also kept as a thermometer code (bit j: at least j+1 units of g lanes
        held), so each flag's next value is one bit of the thermometer shifted by this cycle's
        (push, pop): a 4:1 mux of register bits, with no adder or compare after the handshake.
        (With binary counts Yosys's opt_share merged the four per-case adders into one adder
        behind a (push, pop) mux: consumer valid -> pop -> carry chain -> ready flag was a ULX3S
        critical path at 90.38 MHz.)"""
        li, lo, cap = self.in_lanes, self.out_lanes, self.cap_lanes
        units = cap // g
        therm = Signal(units, name="fill")
        sel = Cat(pop, push)

        def shifted(delta):     # the thermometer after adding delta units (never out of 0..units)
            bits = [therm[j - delta] if 0 <= j - delta < units else Const(int(j - delta < 0))
                    for j in range(units)]
            return Cat(*bits)

        cases = [shifted(p_in * (li // g) - p_out * (lo // g)) for p_in in (0, 1) for p_out in (0, 1)]
        nxt = Signal(units, name="fill_next")
        m.d.comb += nxt.eq(Array(cases)[sel])
        m.d.sync += [
            therm.eq(nxt),
            valid.eq(nxt[lo // g - 1]),
            # ready: at most cap - li lanes held, i.e. bit (cap - li)/g of the thermometer clear
            ready.eq(~nxt[(cap - li) // g]),
        ]
        if count is not None:
            nexts = [count + p_in * (li // g) - p_out * (lo // g) for p_in in (0, 1) for p_out in (0, 1)]
            m.d.sync += count.eq(Array(nexts)[sel])

    def _ring(self, m):
        """A ring that both lane counts divide: beats are written to and read from whole slots."""
        li, lo, n = self.in_lanes, self.out_lanes, self.cap_lanes
        g = gcd(li, lo)
        wslots = [Signal(8 * li, name=f"ring{j}", reset_less=True) for j in range(n // li)]
        ring = Cat(*wslots)
        wslot = Signal(range(n // li))      # the slot the next input beat is written to
        # the slot the output beat is read from, one-hot: the read mux is an AND-OR of registers
        # with no select decoder in front of its wide fan-out (rslot -> decode -> 72-bit mux ->
        # MVU input buffer was the ULX3S critical path at 99.36 MHz)
        rsel = Signal(n // lo, init=1)
        valid, ready = Signal(), Signal(init=1)
        push = Signal()
        pop = Signal()
        m.d.comb += [
            self.o.valid.eq(valid),
            self.o.payload.eq(reduce(or_, (Mux(rsel[j], ring[8 * lo * j:8 * lo * (j + 1)], 0)
                                           for j in range(n // lo)))),
            self.i.ready.eq(ready),
            push.eq(self.i.valid & ready),
            pop.eq(valid & self.o.ready),
        ]
        # the free slot is loaded whether or not a beat arrives (as in _widen): its clock enable
        # waits on registers only
        with m.If(ready):
            with m.Switch(wslot):
                for j, slot in enumerate(wslots):
                    with m.Case(j):
                        m.d.sync += slot.eq(self.i.payload)
        with m.If(push):
            m.d.sync += wslot.eq(Mux(wslot == n // li - 1, 0, wslot + 1))
        with m.If(pop):
            m.d.sync += rsel.eq(rsel.rotate_left(1))
        self._fill_level(m, None, g, push, pop, valid, ready)
        return m

    def _widen(self, m):
        """out = k*in: k-1 beats collected, the k-th completes the registered output beat."""
        li, lo = self.in_lanes, self.out_lanes
        k = lo // li
        parts = Signal(8 * (lo - li), reset_less=True)   # the first k-1 beats of the beat being collected
        data = Signal(8 * lo, reset_less=True)
        n = Signal(range(k))                # beats collected
        m.d.comb += self.o.payload.eq(data)
        m.d.comb += self.i.ready.eq((n != k - 1) | ~self.o.valid | self.o.ready)
        # The data registers load whether or not a beat arrives (a slot not yet taken is simply
        # loaded again), so their clock enables (64+ flip-flops) wait on registers and the
        # consumer's ready only, not on the producer's valid: producer logic -> valid -> push ->
        # data enable was a ULX3S critical path at 86 MHz (10 ns of routing on the wide enable).
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(n == k - 1):
            with m.If(self.i.ready):
                m.d.sync += data.eq(Cat(parts, self.i.payload))
        with m.Else():
            with m.Switch(n):
                for j in range(k - 1):
                    with m.Case(j):
                        m.d.sync += parts[8 * li * j:8 * li * (j + 1)].eq(self.i.payload)
        with m.If(self.i.valid & self.i.ready):
            with m.If(n == k - 1):
                m.d.sync += [self.o.valid.eq(1), n.eq(0)]
            with m.Else():
                m.d.sync += n.eq(n + 1)
        return m

    def _narrow(self, m):
        """in = k*out: a wide beat is loaded and shifted out a slice per cycle."""
        li, lo = self.in_lanes, self.out_lanes
        k = li // lo
        buf = Signal(8 * li, reset_less=True)
        left = Signal(range(k + 1))         # slices of buf still to send
        pop = self.o.valid & self.o.ready
        m.d.comb += [
            self.o.valid.eq(left != 0),
            self.o.payload.eq(buf[:8 * lo]),
            self.i.ready.eq((left == 0) | ((left == 1) & self.o.ready)),
        ]
        # buf loads whether or not a beat arrives (as in _widen): its enable does not wait on valid
        with m.If(self.i.ready):
            m.d.sync += buf.eq(self.i.payload)
        with m.Elif(pop):
            m.d.sync += buf.eq(buf >> (8 * lo))
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += left.eq(k)
        with m.Elif(pop):
            m.d.sync += left.eq(left - 1)
        return m
