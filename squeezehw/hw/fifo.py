"""StreamFIFO: a stream wrapper around Amaranth's block-RAM friendly ``SyncFIFOBuffered``.

Used on the short branch of a Fire module and on the bypass path, where it absorbs the skew between
parallel branches (depths come from the FIFO-depth pass).  ``depth=0`` is a plain wire, so the
builder can instantiate a FIFO everywhere and let the pass decide.

The output is registered (a StreamRegister after the memory's read port: ECP5 block RAM is slow
to its output, and the register also cuts the ready path), so the FIFO holds ``depth + 2`` beats.
With ``output_register`` (the default; off on iCE40 builds, where a lone flip-flop costs a logic
cell and the clock is slow) the read port's data first goes into a plain register with no logic in
front of it: the StreamRegister's slot select after a block RAM's 5.8 ns clock-to-out was the
ULX3S critical path at 96.14 MHz (aa7bb4a, seed 1; a max-pool bank).  Then the FIFO holds
``depth + 3`` beats and its latency is 4.

Throughput: one beat per cycle in and out.  ``SyncFIFOBuffered`` with depth 1 or 2 moves a beat
only every other cycle (its write side does not accept while full, even when a read frees a slot
in the same cycle; checked in simulation), so requested depths 1 and 2 are built as depth 3
(``depth`` reports what was built, ``requested_depth`` what was asked for).  Latency from
input to output on an empty FIFO: 3 cycles (the memory write, the synchronous read, the register),
4 with ``output_register``.
"""
from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from .errors import FoldingError
from .stream_register import StreamRegister

__all__ = ["StreamFIFO"]


class StreamFIFO(wiring.Component):
    """First-in first-out stream buffer.

    Ports: ``i`` (in stream, unsigned(width)), ``o`` (out stream), ``level`` (out, entries held).

    Attributes: ``memory_bits`` = width * depth (the storage instantiated: ``depth - 1`` words of
    block RAM plus one output register word), ``latency`` (cycles from an input beat to it being
    valid at ``o`` when the FIFO is empty).
    """

    def __init__(self, *, width: int, depth: int, output_register: bool = True):
        if not isinstance(width, int) or width < 1:
            raise FoldingError(f"StreamFIFO: width={width!r} must be a positive integer (bits per beat)")
        if not isinstance(depth, int) or depth < 0:
            raise FoldingError(f"StreamFIFO: depth={depth!r} must be an integer >= 0 (0 = wire-through)")
        self.width = width
        self.requested_depth = depth
        self.depth = depth = self.built_depth(depth)
        self.memory_bits = width * depth
        self.output_register = bool(output_register) and depth > 0
        self.latency = 0 if depth == 0 else 3 + self.output_register
        super().__init__({
            "i": In(stream.Signature(width)),
            "o": Out(stream.Signature(width)),
            "level": Out(range(depth + self.output_register + StreamRegister.CAPACITY + 1)),
        })

    @staticmethod
    def built_depth(depth: int) -> int:
        """The depth instantiated for a requested one: SyncFIFOBuffered(depth <= 2) moves a beat
        only every other cycle (a silent throughput trap), so 1 and 2 become 3."""
        return 3 if depth in (1, 2) else depth

    def elaborate(self, platform):
        m = Module()
        if self.depth == 0:
            m.d.comb += [
                self.o.payload.eq(self.i.payload),
                self.o.valid.eq(self.i.valid),
                self.i.ready.eq(self.o.ready),
                self.level.eq(0),
            ]
            return m
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=self.width, depth=self.depth)
        m.submodules.out = out = StreamRegister(width=self.width)
        m.d.comb += [
            fifo.w_data.eq(self.i.payload),
            fifo.w_en.eq(self.i.valid),
            self.i.ready.eq(fifo.w_rdy),
        ]
        if self.output_register:
            # the memory's data straight into a register (clock enable only: no mux in front);
            # it loads whenever it is free, so its enable waits on two flip-flops, not on valid
            r_valid = Signal()
            r_data = Signal(self.width, reset_less=True)
            free = ~r_valid | out.i.ready
            with m.If(free):
                m.d.sync += [r_valid.eq(fifo.r_rdy), r_data.eq(fifo.r_data)]
            m.d.comb += [
                fifo.r_en.eq(free),
                out.i.payload.eq(r_data),
                out.i.valid.eq(r_valid),
                self.level.eq(fifo.level + r_valid + out.held),
            ]
        else:
            m.d.comb += [
                out.i.payload.eq(fifo.r_data),
                out.i.valid.eq(fifo.r_rdy),
                fifo.r_en.eq(out.i.ready),
                self.level.eq(fifo.level + out.held),
            ]
        wiring.connect(m, out.o, wiring.flipped(self.o))
        return m
