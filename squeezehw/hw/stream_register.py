"""StreamRegister: a register stage on a stream that cuts both directions (a skid buffer).

Why: on ECP5 a block RAM read port without its output register has a clock-to-out of about
5.8 ns in nextpnr's timing model, so a block that drives its output straight from a memory (a
FIFO, the window's line buffer, an MVU's output FIFO) leaves its consumer only ~4 ns of logic and
routing at 100 MHz.  Registering the payload (and valid) puts the memory's slow output on a
path that ends at a flip-flop.  And ``i.ready`` comes from a register too, so a consumer's ready
does not ripple back through the producer's control logic (chains like pool -> bypass add ->
FIFO read enable set the ULX3S Fmax at 80 MHz before).

Two slots: ``main`` drives ``o``; ``skid`` catches the beat that arrives in the cycle ``o`` stalls
(``i.ready`` was already high).  ``i.ready = ~skid.valid``.  One beat per cycle on the output in
steady state; after a stall the input sees one cycle of not-ready while the skid drains.  Latency
1 cycle; holds up to ``CAPACITY`` = 2 beats (``held``); ``register_bits`` = ``2 * (width + 1)``.
"""
from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .errors import FoldingError

__all__ = ["StreamRegister"]


class StreamRegister(wiring.Component):
    """Ports: ``i`` (in stream, unsigned(width)), ``o`` (out stream, unsigned(width)).
    ``held``: beats inside (0..2), for a FIFO's level."""

    CAPACITY = 2
    LATENCY = 1

    @classmethod
    def bits(cls, width: int) -> int:
        """Flip-flops of a StreamRegister of ``width`` bits: its slots' data and valid flags."""
        return cls.CAPACITY * (width + 1)

    def __init__(self, *, width: int):
        if not isinstance(width, int) or width < 1:
            raise FoldingError(f"StreamRegister: width={width!r} must be a positive integer (bits per beat)")
        self.width = width
        self.latency = self.LATENCY
        self.register_bits = self.bits(width)
        super().__init__({"i": In(stream.Signature(width)), "o": Out(stream.Signature(width))})
        self.held = Signal(range(self.CAPACITY + 1))

    def elaborate(self, platform):
        m = Module()
        skid_valid = Signal()
        # payload registers without reset (only the valid flags need one: fewer reset loads)
        skid_data = Signal(self.width, reset_less=True)
        main_data = Signal(self.width, reset_less=True)
        m.d.comb += [self.i.ready.eq(~skid_valid), self.held.eq(self.o.valid + skid_valid),
                     self.o.payload.eq(main_data)]
        with m.If(~self.o.valid | self.o.ready):            # main is free after this cycle
            with m.If(skid_valid):
                m.d.sync += [self.o.valid.eq(1), main_data.eq(skid_data), skid_valid.eq(0)]
            with m.Else():
                m.d.sync += [self.o.valid.eq(self.i.valid), main_data.eq(self.i.payload)]
        with m.Elif(self.i.valid & ~skid_valid):            # main stalls: catch the arriving beat
            m.d.sync += [skid_valid.eq(1), skid_data.eq(self.i.payload)]
        return m
