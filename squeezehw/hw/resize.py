"""Resize: a stream width converter (gearbox) between a producer with ``in_lanes`` lanes and a
consumer with ``out_lanes`` lanes, for pixels of ``channels`` 8-bit channels.

Both lane counts divide ``channels``, so pixel boundaries fall on beat boundaries on both sides and
the converter only has to preserve the byte order (channel order, pixel after pixel, frame after
frame); it needs no pixel counter.  Any ratio works (e.g. 4 -> 6 lanes for 12 channels).

Design: a shift buffer of ``in_lanes + out_lanes - 1`` lanes holding ``count`` valid lanes (lane 0
oldest).  ``o`` is valid while ``count >= out_lanes`` (never depends on ready); an input beat is
accepted when it fits after this cycle's output, and is written just above the lanes that remain.
That capacity is exactly enough for one beat per cycle on the narrow side: widening accepts an input
every cycle and emits a wide beat every ``out/in`` inputs; narrowing emits every cycle and accepts a
wide beat whenever the remainder would drop below ``out_lanes``.  Identity (a wire) when
``in_lanes == out_lanes``.
"""
from __future__ import annotations

from math import gcd

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .errors import FoldingError

__all__ = ["Resize"]


class Resize(wiring.Component):
    """Ports: ``i`` (in stream, unsigned(8*in_lanes)), ``o`` (out stream, unsigned(8*out_lanes)).

    Attributes: ``memory_bits`` (register bits of the shift buffer, 0 for identity),
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
        self.identity = in_lanes == out_lanes
        self.cap_lanes = 0 if self.identity else in_lanes + out_lanes - 1
        self.memory_bits = 8 * self.cap_lanes
        self.latency = 0 if self.identity else 1
        super().__init__({
            "i": In(stream.Signature(8 * in_lanes)),
            "o": Out(stream.Signature(8 * out_lanes)),
        })

    def elaborate(self, platform):
        m = Module()
        if self.identity:
            m.d.comb += [
                self.o.payload.eq(self.i.payload),
                self.o.valid.eq(self.i.valid),
                self.i.ready.eq(self.o.ready),
            ]
            return m
        li, lo, cap = self.in_lanes, self.out_lanes, self.cap_lanes
        g = gcd(li, lo)  # the fill level is always a multiple of g lanes: shift in g-lane units
        buf = Signal(8 * cap)
        count = Signal(range(cap // g + 1))  # valid lanes / g
        pop = Signal()
        remain = Signal(range(cap // g + 1))
        m.d.comb += [
            self.o.valid.eq(count >= lo // g),
            self.o.payload.eq(buf[:8 * lo]),
            pop.eq(self.o.valid & self.o.ready),
            remain.eq(count - Mux(pop, lo // g, 0)),
            self.i.ready.eq(remain <= (cap - li) // g),
        ]
        push = self.i.valid & self.i.ready
        # Lanes at and above `count` are always zero, so the new beat can be OR-ed in.
        shifted = Mux(pop, buf >> (8 * lo), buf)
        inserted = (self.i.payload.as_unsigned() << (remain * (8 * g)))[:8 * cap]
        m.d.sync += [
            buf.eq(Mux(push, shifted | inserted, shifted)),
            count.eq(remain + Mux(push, li // g, 0)),
        ]
        return m
