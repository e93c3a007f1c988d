"""The whole accelerator: a build plan (squeezehw/plan/lowering.py) becomes one streaming Component.

``i`` takes image pixels in raster order, each pixel's channels in beats of ``in_lanes`` bytes
(conv1's SIMD).  ``o`` gives, per frame, ``classes`` beats of one logit each (class 0 first), then
one beat with the class index (docs/numerics.md, "Stream order").  Stages are chained in model
order; a Resize is inserted wherever a producer's lanes differ from the consumer's.

This module only instantiates the plan's blocks (each record's ``block()``, with every size,
FIFO depth, requantiser mode and multiplier primitive as explicit constructor arguments) and
connects them; every decision is made in the plan.  Rate smoothing: every max-pool is followed by
the plan's FIFO (``PoolPlan.out_fifo_depth``, squeezehw/plan/fifo_sizing.py: a 2-beat margin, the pool
hands out each finished output row from its banks at the consumer's pace).  MVUs take input through a
ping-pong buffer and the Fire modules have FIFOs sized for throughput, so no other top-level stage
needs a FIFO (``python -m squeezehw.sim.profile`` shows blocked/starved cycles per stream).
"""
from amaranth import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from . import reset_tree
from .fire import Chain, FireEngine

__all__ = ["Accelerator"]


class Accelerator(wiring.Component):
    """The design of ``plan`` (a ``squeezehw.plan.lowering.Plan``: ``squeezehw.plan.lowering.lower(model, folding,
    target)``, or ``plan.accelerator()``).

    ``stop_after``: build only the layers up to and including that one, whose feature map is then
    the output stream (raster order, its lanes per beat) -- used to find the first layer where the
    hardware and the golden model disagree.  ``probes``: per-stream transfer/blocked counters.
    ``reset_tree``: every block resets from a register ``reset_tree.DEPTH`` levels down a tree
    (squeezehw/hw/reset_tree.py), and ``i``/``o`` stay quiet for that many cycles after a reset;
    False: every register on the ``sync`` reset directly."""

    def __init__(self, plan, *, stop_after: str | None = None, probes: bool = False,
                 reset_tree: bool = True):
        self.lowered = plan
        self.model = model = plan.model
        self.folding = plan.folding
        self.probes = probes
        records = list(plan.stages)
        names = [r.name for r in records]
        if stop_after is not None:
            if stop_after not in names:
                raise ValueError(f"stop_after={stop_after!r} is not a layer of {model.name}: {names}")
            records = records[:names.index(stop_after) + 1]
        self.stop_after = stop_after
        self.reset_tree = reset_tree
        # (record, block, window, out_fifo) per top-level stage, instantiated from the plan
        self.plan = [{"name": r.name, "kind": r.kind, "block": r.block(),
                      "window": r.window_block() if r.kind == "conv" else None,
                      "out_fifo": r.fifo_block() if r.kind == "pool" else None,
                      "in_lanes": r.in_lanes, "out_lanes": r.out_lanes,
                      "in_ch": r.geometry.in_ch if r.kind in ("conv", "pool") else
                      (r.in_ch if r.kind == "fire" else r.conv.geometry.in_ch)}
                     for r in records]
        self.in_lanes = self.plan[0]["in_lanes"]
        last = self.plan[-1]
        if last["kind"] == "head":
            self.out_lanes = None
            self.out_beats_per_frame = model.classes + 1
            self.out_width = len(last["block"].o.payload)
        else:
            c, h, w = model.shapes()[[l.name for l in model.layers].index(last["name"])]
            self.out_lanes = last["out_lanes"]
            self.out_beats_per_frame = c * h * w // self.out_lanes
            self.out_width = 8 * self.out_lanes
        ports = {"i": In(stream.Signature(8 * self.in_lanes)), "o": Out(stream.Signature(self.out_width))}
        if probes:
            self.probe_names = self._probe_names()
            ports["probe_sel"] = In(range(2 * len(self.probe_names)))
            ports["probe_data"] = Out(PROBE_BITS)
        super().__init__(ports)

    def requant_multipliers(self) -> int:
        """Requantisation multipliers (0 with ``requant="serial"``): the plan's count."""
        return self.lowered.requant_multipliers()

    def fifos(self) -> dict:
        """FIFO depths chosen by the sizing pass, per Fire module."""
        return self.lowered.fifos()

    def stage_fifos(self) -> dict:
        """Rate-smoothing FIFOs between top-level stages: {stage: {"depth", "width", "memory_bits"}}."""
        return {p["name"]: {"depth": p["out_fifo"].depth, "width": p["out_fifo"].width,
                            "memory_bits": p["out_fifo"].memory_bits}
                for p in self.plan if p.get("out_fifo") is not None}

    def _probe_names(self) -> list[str]:
        names = ["input"]
        for p in self.plan:
            if p.get("window") is not None:
                names.append(f"{p['name']}.window")
            names.append(p["name"])
            if p.get("out_fifo") is not None:
                names.append(f"{p['name']}.fifo")
        return names

    def elaborate(self, platform):
        m = Module()
        depth = reset_tree.DEPTH if self.reset_tree else 0
        chain = Chain(m, "", reset_levels=depth)
        # the ports, quiet while the blocks are still to be reset (reset_tree.reset_gate)
        pending = reset_tree.reset_gate(m, "ports", depth)
        src = stream.Signature(len(self.i.payload)).create()
        m.d.comb += [src.payload.eq(self.i.payload), src.valid.eq(self.i.valid & ~pending),
                     self.i.ready.eq(src.ready & ~pending)]
        src_lanes = self.in_lanes
        streams = [self.i]
        for k, p in enumerate(self.plan):
            name = p["name"].replace(".", "_")
            if depth and isinstance(p["block"], FireEngine):   # a container: the rest of the tree inside
                p["block"].reset_levels = depth - 1
                block = chain.add(name, p["block"], reset_levels=1)
            else:
                block = chain.add(name, p["block"])
            entry = block.i
            if p.get("window") is not None:
                win = chain.add(f"{name}_window", p["window"])
                chain.link(win.o, win.lanes, block.i, block.simd, block.N, f"{name}_win")
                entry = win.i
                streams.append(win.o)
            chain.link(src, src_lanes, entry, p["in_lanes"], p["in_ch"], f"{name}_in")
            src, src_lanes = block.o, p["out_lanes"]
            streams.append(block.o)
            if p.get("out_fifo") is not None:
                fifo = chain.add(f"{name}_fifo", p["out_fifo"])
                wiring.connect(m, src, fifo.i)
                src = fifo.o
                streams.append(fifo.o)
        out = stream.Signature(self.out_width).flip().create()
        wiring.connect(m, src, out)
        m.d.comb += [self.o.payload.eq(out.payload), self.o.valid.eq(out.valid & ~pending),
                     out.ready.eq(self.o.ready & ~pending)]
        if self.probes:
            _add_probes(m, streams, self.probe_sel, self.probe_data)
        return m


PROBE_BITS = 40


def _add_probes(m, streams, sel, data):
    """Per stream, count transfers (valid & ready) and blocked cycles (valid & ~ready): profiling at
    Verilator speed.  ``sel`` = 2k reads stream k's transfers, 2k+1 its blocked cycles."""
    from amaranth import Signal
    counters = []
    for k, st in enumerate(streams):
        xfer, blocked = Signal(PROBE_BITS, name=f"probe{k}_xfer"), Signal(PROBE_BITS, name=f"probe{k}_blocked")
        with m.If(st.valid & st.ready):
            m.d.sync += xfer.eq(xfer + 1)
        with m.If(st.valid & ~st.ready):
            m.d.sync += blocked.eq(blocked + 1)
        counters += [xfer, blocked]
    with m.Switch(sel):
        for k, c in enumerate(counters):
            with m.Case(k):
                m.d.comb += data.eq(c)
