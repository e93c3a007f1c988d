"""The whole accelerator: an integer model plus a folding become one streaming Component.

``i`` takes image pixels in raster order, each pixel's channels in beats of ``in_lanes`` bytes
(conv1's SIMD).  ``o`` gives, per frame, ``classes`` beats of one logit each (class 0 first), then
one beat with the class index (docs/numerics.md, "Stream order").  Stages are chained in model
order; a Resize is inserted wherever a producer's lanes differ from the consumer's.

Rate smoothing: every max-pool is followed by a StreamFIFO of ``pool.burst_beats + 2`` beats (the
pool emits each output row in a burst while the last input row of its windows arrives; a consumer
at the pipeline's rate takes only ``1/stride`` of it meanwhile, see squeezehw/hw/maxpool.py).
Without it the pool stalls its producer once per output row.  MVUs take input through a ping-pong
buffer and the Fire modules size their internal FIFOs for throughput, so no other top-level
stage needs a FIFO (``python -m squeezehw.profile`` shows blocked/starved cycles per stream).
"""
from amaranth import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..errors import UserError
from ..folding import Folding, stages, window_lanes
from ..intmodel import IntModel, QConv, QFire, QHead, QMaxPool
from .fifo import StreamFIFO
from .fire import Chain, FireEngine
from .head import Head
from .maxpool import MaxPool
from .mvu import MVU, requant_mode
from .window import SlidingWindow

__all__ = ["Accelerator"]


def _elaborate_with_requant(block, mode):
    """Opt-in: a FireEngine builds its MVUs in ``elaborate``; run that inside ``requant_mode(mode)``
    (an instance attribute shadows the method; the module hierarchy stays as it is)."""
    plain = block.elaborate

    def elaborate(platform):
        with requant_mode(mode):
            return plain(platform)
    block.elaborate = elaborate

def _check_weight_codes(model, codes) -> dict:
    """``weight_codes``: optional {conv name: PackedWeights} (squeezehw.sparse_weights), the
    compressed weights an MVU reads through a WeightDecoder instead of its dense memory."""
    codes = dict(codes or {})
    unknown = sorted(set(codes) - {c.name for c in model.convs()})
    if unknown:
        raise UserError(f"weight_codes name {', '.join(unknown)}, not convs of {model.name}; "
                        f"its convs are {', '.join(c.name for c in model.convs())}")
    return codes


POOL_FIFO_MARGIN = 2      # beats: one in flight, one in the FIFO's output register


class Accelerator(wiring.Component):
    """``stop_after``: build only the layers up to and including that one, whose feature map is then
    the output stream (raster order, its lanes per beat) -- used to find the first layer where the
    hardware and the golden model disagree.

    ``requant``: ``"parallel"`` (default) or ``"serial"``, the MVUs' requantiser (opt-in area mode
    for tiny devices: no multiplier per PE lane, a digit-serial one in LUTs; see
    squeezehw/hw/mvu.py).  Same throughput, a few cycles more latency per MVU.

    ``weight_codes``: optional {conv name: squeezehw.sparse_weights.PackedWeights}: those convs'
    MVUs read compressed weights through a WeightDecoder (same cycles per frame in steady state)."""

    def __init__(self, *, model: IntModel, folding: Folding, stop_after: str | None = None,
                 requant: str = "parallel", probes: bool = False, weight_codes: dict | None = None):
        folding.validate(model)
        self.model, self.folding = model, folding
        try:
            self.weight_codes = _check_weight_codes(model, weight_codes)
        except UserError:
            self._MustUse__silence = True      # a rejected design is not an "unused elaboratable"
            raise
        self.probes = probes
        self.requant = requant
        self.stages = {s.name: s for s in stages(model)}
        with requant_mode(requant):
            self.plan = self._plan()
        names = [p["name"] for p in self.plan]
        if stop_after is not None:
            if stop_after not in names:
                raise ValueError(f"stop_after={stop_after!r} is not a layer of {model.name}: {names}")
            k = names.index(stop_after)
            for p in self.plan[k + 1:]:       # blocks left out of the truncated design
                for obj in (p.get("block"), p.get("window"), p.get("out_fifo")):
                    _silence(obj)
            self.plan = self.plan[:k + 1]
        self.stop_after = stop_after
        first = self.plan[0]
        self.in_lanes = first["in_lanes"]
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

    def _plan(self) -> list[dict]:
        """Instantiate every top-level block (not elaborated yet) with its lanes and geometry."""
        m, f = self.model, self.folding
        plan = []
        c, h, w = m.in_ch, m.height, m.width
        for layer in m.layers:
            if isinstance(layer, QConv):
                s, fold = self.stages[layer.name], f[layer.name]
                mvu = MVU.from_qconv(layer, simd=fold.simd, pe=fold.pe,
                                     weight_code=self.weight_codes.get(layer.name))
                win, in_lanes = None, fold.simd
                if s.windowed:
                    in_lanes = window_lanes(c, fold.simd)
                    win = SlidingWindow(channels=c, height=h, width=w, kernel=layer.kernel, stride=layer.stride,
                                        padding=layer.padding, lanes=in_lanes)
                plan.append({"name": layer.name, "kind": "conv", "block": mvu, "window": win,
                             "in_lanes": in_lanes, "out_lanes": fold.pe, "in_ch": c})
                c, (h, w) = layer.out_ch, s.out_hw
            elif isinstance(layer, QMaxPool):
                s, fold = self.stages[layer.name], f[layer.name]
                pool = MaxPool(channels=c, height=h, width=w, lanes=fold.simd, kernel=layer.kernel,
                               stride=layer.stride)
                fifo = StreamFIFO(width=8 * fold.simd, depth=pool.burst_beats + POOL_FIFO_MARGIN)
                plan.append({"name": layer.name, "kind": "pool", "block": pool, "out_fifo": fifo,
                             "in_lanes": fold.simd, "out_lanes": fold.simd, "in_ch": c})
                h, w = s.out_hw
            elif isinstance(layer, QFire):
                in_lanes = f[layer.squeeze.name].simd if not plan else plan[-1]["out_lanes"]
                fire = FireEngine(fire=layer, height=h, width=w, in_lanes=in_lanes, folds=f.layers,
                                  weight_codes=self.weight_codes)
                if self.requant != "parallel":
                    _elaborate_with_requant(fire, self.requant)
                plan.append({"name": layer.name, "kind": "fire", "block": fire,
                             "in_lanes": in_lanes, "out_lanes": fire.out_lanes, "in_ch": c})
                c = layer.out_ch
            elif isinstance(layer, QHead):
                fold = f[layer.conv.name]
                head = Head(qhead=layer, pixels=h * w, simd=fold.simd, pe=fold.pe,
                            weight_code=self.weight_codes.get(layer.conv.name))
                plan.append({"name": layer.name, "kind": "head", "block": head,
                             "in_lanes": fold.simd, "out_lanes": None, "in_ch": c})
        return plan

    def requant_multipliers(self) -> int:
        """Requantisation multipliers (one per PE lane of every MVU; 0 with ``requant="serial"``)."""
        return 0 if self.requant == "serial" else sum(
            f.pe for name, f in self.folding.layers.items() if name in self.stages and self.stages[name].kind == "conv")

    def fifos(self) -> dict:
        """FIFO depths chosen by the sizing pass, per Fire module."""
        return {p["name"]: p["block"].fifos.as_dict() for p in self.plan if p["kind"] == "fire"}

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
        chain = Chain(m, "")
        src, src_lanes = wiring.flipped(self.i), self.in_lanes
        streams = [self.i]
        for k, p in enumerate(self.plan):
            name = p["name"].replace(".", "_")
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
        wiring.connect(m, src, wiring.flipped(self.o))
        if self.probes:
            _add_probes(m, streams, self.probe_sel, self.probe_data)
        return m


def _silence(obj, depth: int = 2) -> None:
    """Mark an unused block and the blocks it already holds as deliberately unused."""
    from amaranth.hdl import Elaboratable
    if isinstance(obj, Elaboratable):
        obj._MustUse__silence = True
        if depth:
            for v in vars(obj).values():
                _silence(v, depth - 1)


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
