"""StreamRegister: one pipeline register on a stream, at one beat per cycle.

Why: on ECP5 a block RAM read port without its output register has a clock-to-out of about
5.8 ns in nextpnr's timing model, so a block that drives its output straight from a memory (a
FIFO, the window's line buffer, an MVU's output FIFO) leaves its consumer only ~4 ns of logic and
routing at 100 MHz.  Registering the payload (and valid) puts the memory's slow output on a
path that ends at a flip-flop.

``i.ready = ~o.valid | o.ready``: the register takes a beat whenever it is empty or its beat leaves
this cycle (a pipe stage, not a skid buffer: ``ready`` passes through combinationally, which is
fine because every ready path here starts at a register).  Latency 1 cycle; ``register_bits`` =
``width + 1``.
"""
from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .errors import FoldingError

__all__ = ["StreamRegister"]


class StreamRegister(wiring.Component):
    """Ports: ``i`` (in stream, unsigned(width)), ``o`` (out stream, unsigned(width))."""

    def __init__(self, *, width: int):
        if not isinstance(width, int) or width < 1:
            raise FoldingError(f"StreamRegister: width={width!r} must be a positive integer (bits per beat)")
        self.width = width
        self.latency = 1
        self.register_bits = width + 1
        super().__init__({"i": In(stream.Signature(width)), "o": Out(stream.Signature(width))})

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
        with m.If(self.i.ready):
            m.d.sync += [self.o.valid.eq(self.i.valid), self.o.payload.eq(self.i.payload)]
        return m
