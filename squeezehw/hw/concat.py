"""Concat: join two feature-map streams along the channel axis (a Fire module's expand outputs).

Per pixel it passes ``channels_a / lanes`` beats from ``a`` and then ``channels_b / lanes`` beats
from ``b``, which is ``torch.cat([a, b], dim=1)`` in the stream order of docs/numerics.md, and loops
forever (back-to-back pixels and frames; a frame is just more pixels).  Purely combinational data
path (zero latency, no storage): one beat per cycle whenever the selected input has one; the other
input waits, so the FIFO-depth pass must size the faster branch's FIFO for the skew.
"""
from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .errors import FoldingError

__all__ = ["Concat"]


class Concat(wiring.Component):
    """Ports: ``a``, ``b`` (in streams), ``o`` (out stream), all unsigned(8 * lanes).

    Attributes: ``memory_bits`` = 0, ``latency`` = 0, ``beats_per_pixel`` = (channels_a +
    channels_b) / lanes.
    """

    def __init__(self, *, lanes: int, channels_a: int, channels_b: int):
        if not isinstance(lanes, int) or lanes < 1:
            raise FoldingError(f"Concat: lanes={lanes!r} must be a positive integer")
        for name, c in (("channels_a", channels_a), ("channels_b", channels_b)):
            if not isinstance(c, int) or c < 1:
                raise FoldingError(f"Concat: {name}={c!r} must be a positive integer")
            if c % lanes:
                raise FoldingError(f"Concat: lanes={lanes} does not divide {name}={c}; choose lanes "
                                   f"dividing both {channels_a} and {channels_b}")
        self.lanes = lanes
        self.channels_a = channels_a
        self.channels_b = channels_b
        self.beats_a = channels_a // lanes
        self.beats_b = channels_b // lanes
        self.beats_per_pixel = self.beats_a + self.beats_b
        self.memory_bits = 0
        self.latency = 0
        sig = stream.Signature(8 * lanes)
        super().__init__({"a": In(sig), "b": In(sig), "o": Out(sig)})

    def elaborate(self, platform):
        m = Module()
        beat = Signal(range(self.beats_per_pixel))  # position within the output pixel
        # from_b (= beat >= beats_a) is a register loaded with the next beat's value, so the
        # valid/ready muxes below wait on no compare (they sit on the ready chain between the
        # concat's consumer and both expand units)
        from_b = Signal()
        beat_next = Signal.like(beat)
        m.d.comb += beat_next.eq(Mux(beat == self.beats_per_pixel - 1, 0, beat + 1))
        with m.If(from_b):
            m.d.comb += [
                self.o.payload.eq(self.b.payload),
                self.o.valid.eq(self.b.valid),
                self.b.ready.eq(self.o.ready),
            ]
        with m.Else():
            m.d.comb += [
                self.o.payload.eq(self.a.payload),
                self.o.valid.eq(self.a.valid),
                self.a.ready.eq(self.o.ready),
            ]
        with m.If(self.o.valid & self.o.ready):
            # beats_per_pixel >= 2 (each side has at least one beat)
            m.d.sync += [beat.eq(beat_next), from_b.eq(beat_next >= self.beats_a)]
        return m
