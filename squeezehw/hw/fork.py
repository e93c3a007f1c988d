"""Fork: duplicate one stream into ``n`` streams (the fork before a Fire module's two expands and
before a bypass).

Each output has an "already taken" flag (FINN's duplicate-streams style): an output that accepted
the current beat stops offering it while the others have not, so outputs may accept at different
times without ever seeing a beat twice or missing one.  The input beat is consumed in the cycle in
which the last outstanding output takes it, so with all outputs ready the fork moves one beat per
cycle with zero latency (purely combinational data path, n flag registers).
"""
from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .errors import FoldingError

__all__ = ["Fork"]


class Fork(wiring.Component):
    """Ports: ``i`` (in stream, unsigned(width)), ``o0`` .. ``o{n-1}`` (out streams, same width).

    Attributes: ``memory_bits`` = 0 (no data storage), ``latency`` = 0 cycles.
    """

    def __init__(self, *, width: int, n: int = 2):
        if not isinstance(width, int) or width < 1:
            raise FoldingError(f"Fork: width={width!r} must be a positive integer (bits per beat)")
        if not isinstance(n, int) or n < 1:
            raise FoldingError(f"Fork: n={n!r} outputs; use an integer >= 1 (2 for a Fire fork)")
        self.width = width
        self.n = n
        self.memory_bits = 0
        self.latency = 0
        ports = {"i": In(stream.Signature(width))}
        for k in range(n):
            ports[f"o{k}"] = Out(stream.Signature(width))
        super().__init__(ports)

    @property
    def outputs(self):
        return [getattr(self, f"o{k}") for k in range(self.n)]

    def elaborate(self, platform):
        m = Module()
        outs = self.outputs
        taken = [Signal(name=f"taken{k}") for k in range(self.n)]
        # Each output is done with the current beat once it took it earlier or takes it now.
        done = [Signal(name=f"done{k}") for k in range(self.n)]
        for o, t, d in zip(outs, taken, done):
            m.d.comb += [
                o.payload.eq(self.i.payload),
                o.valid.eq(self.i.valid & ~t),   # never depends on ready
                d.eq(t | o.ready),
            ]
        all_done = Signal()
        m.d.comb += all_done.eq(Cat(*done).all())
        m.d.comb += self.i.ready.eq(all_done)
        with m.If(self.i.valid & all_done):
            m.d.sync += [t.eq(0) for t in taken]
        with m.Else():
            for o, t in zip(outs, taken):
                with m.If(o.valid & o.ready):
                    m.d.sync += t.eq(1)
        return m
