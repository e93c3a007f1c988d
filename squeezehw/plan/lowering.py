"""The build plan: one lowered, typed description of the design that everything else reads.

``lower(model, folding, target)`` turns an integer model, a folding and a target (multiplier
primitive, requantiser mode) into a :class:`Plan`: one frozen record per top-level stage, in
stream order --

- :class:`ConvPlan`: a conv on a matrix-vector unit (geometry, SIMD/PE, the sliding window's
  lanes, accumulator bits, requantiser mode, multiplier primitive, weight-memory shape, output
  FIFO depth);
- :class:`PoolPlan`: a max-pool and the FIFO after it;
- :class:`FirePlan`: a Fire module (its convs as ConvPlans, concat lanes, every FIFO depth from
  the one sizing pass in squeezehw/plan/fifo_sizing.py, the bypass add);
- :class:`HeadPlan`: the final conv and the global pool.

Each record answers its own expected cycles per frame (``cycles()``, the cost model of
squeezehw/plan/folding.py) and the multipliers it instantiates (``multipliers()``, MAC, requantisation
and bypass add, with their operand widths), and builds its hardware block (``block()``) with
explicit constructor arguments.  ``hw/accelerator.py`` only instantiates these blocks and connects
them; nothing in ``hw/`` reads the folding or the cost model.  design.json, the resource estimate
(squeezehw/plan/resources.py), the profiler and ``--fold auto`` budgets all read this plan, so they
cannot disagree with what was built.

Adding a layer kind: one record type here (fields, ``cycles``, ``multipliers``, ``block``), its
case in :func:`lower`, and its hardware block in ``hw/``.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np

from ..errors import UserError
from ..frontend.ir import bits_for_signed
from ..hw.multiplier import DSP_FAMILIES
from ..quant.intmodel import IntModel, QConv, QFire, QHead, QMaxPool
from .fifo_sizing import FireBuffers, FireFifos, pool_fifo_depth, size_fire
from .folding import Folding, Stage, fire_out_lanes, stages, summarise, window_lanes, with_utilisation

__all__ = ["Target", "Multipliers", "ConvPlan", "PoolPlan", "FirePlan", "HeadPlan", "Plan", "lower",
           "fire_plan", "REQUANT_MODES", "MULTIPLIER_PRIMITIVES"]

REQUANT_MODES = ("parallel", "serial")
MULTIPLIER_PRIMITIVES = DSP_FAMILIES     # what hw/multiplier.py RegisteredMultiplier can be built as
WINDOW_EXTRA_PIXELS = 0     # hw/window.py SlidingWindow.input_skew_pixels: no look-ahead beyond (y+1, x+1)
MULT_BITS = 16              # requantisation multiplier (docs/numerics.md)


@dataclass(frozen=True)
class Target:
    """What the hardware is built as, beyond the folding: the multiplier primitive every
    RegisteredMultiplier becomes (``"generic"``: ``*`` between registers; ``"ecp5"``: MULT18X18D)
    and the requantiser (``"parallel"``: a multiplier per PE lane; ``"serial"``: digit-serial in
    LUTs, no DSP).

    ``board``: the board registry name whose block RAM the design is built for (None: not
    known); a dense weight memory deeper than one of its blocks is then banked
    (squeezehw.plan.resources.weight_bank_depth, hw/mvu.py).  ``bank_depth``: bank every dense
    weight memory deeper than this many words into banks of this depth, whatever the board
    (tests and experiments)."""
    multiplier: str = "generic"
    requant: str = "parallel"
    board: str | None = None
    bank_depth: int | None = None

    def __post_init__(self):
        if self.multiplier not in MULTIPLIER_PRIMITIVES:
            raise UserError(f"multiplier primitive {self.multiplier!r} must be one of "
                            f"{', '.join(MULTIPLIER_PRIMITIVES)}")
        if self.requant not in REQUANT_MODES:
            raise UserError(f"requantiser {self.requant!r} must be one of {', '.join(REQUANT_MODES)}")
        if self.bank_depth is not None and (isinstance(self.bank_depth, bool) or not isinstance(self.bank_depth, int)
                                            or self.bank_depth < 1):
            raise UserError(f"bank_depth {self.bank_depth!r} must be a positive number of weight words or None")

    @property
    def reset_tree(self) -> bool:
        """Whether the blocks reset from a register tree (hw/reset_tree.py): not on iCE40 parts,
        where the tree buys nothing at their clock (18 MHz on the UP5K) and each of its lone
        flip-flops takes a logic cell (the iCEBreaker member no longer fitted by 6 LC with it)."""
        if self.board is None:
            return True
        from .resources import FAMILY_BOARDS
        from ..boards.registry import get_board
        return get_board(FAMILY_BOARDS.get(self.board, self.board)).family != "ice40"

    @property
    def fifo_output_register(self) -> bool:
        """Whether a FIFO's block-RAM data goes into a plain register before its output skid
        buffer (hw/fifo.py ``output_register``): not on iCE40 parts, for the reason of
        :attr:`reset_tree` (their block RAM is not slow to its output at their clock)."""
        return self.reset_tree

    @property
    def timing_registers(self) -> bool:
        """Whether the sliding windows and MVUs register their issue flags, slot bases and read
        addresses a cycle ahead (hw/window.py, hw/mvu.py ``timing_registers``; the ULX3S 100 MHz
        work): not on iCE40 parts, for the reason of :attr:`reset_tree` (the iCEBreaker member no
        longer fitted with them: 5,347 / 5,280 LC at 3792562)."""
        return self.reset_tree

    def weight_bank_depth(self, width: int, depth: int) -> int | None:
        """Words per bank of a dense ``width`` x ``depth`` weight memory (None: one memory)."""
        if self.bank_depth is not None:
            return self.bank_depth if depth > self.bank_depth else None
        if self.board is None:
            return None
        from .resources import weight_bank_depth
        return weight_bank_depth(width, depth, self.board)


@dataclass(frozen=True)
class Multipliers:
    """``count`` multipliers of one kind (``role``: "mac", "requant", "add", or "index": a window's
    constant address multiply, see window_index_multipliers): ``a_bits`` x
    ``b_bits`` operands, signed or not, as hw/multiplier.py RegisteredMultiplier instantiates them."""
    role: str
    count: int
    a_bits: int
    a_signed: bool
    b_bits: int
    b_signed: bool


def window_index_multipliers(geometry: Stage, lanes: int) -> list[Multipliers]:
    """hw/window.py computes a column's first buffer address as ``ix0 * B`` (B = beats per pixel,
    a constant): Yosys turns a power-of-two B into a shift, any other B into a multiplier, which
    synth_ecp5 puts in a MULT18X18D (one per window: its two products share one $mul).  Seen in
    nextpnr's count of the half-width v1.1 member (docs/performance.md)."""
    from amaranth.hdl import Shape
    b = geometry.in_ch // lanes
    if b & (b - 1) == 0:        # 1, 2, 4, ...: no multiplier
        return []
    wo, s, p = geometry.out_hw[1], geometry.stride, geometry.padding
    ix0 = Shape.cast(range(-p, (wo - 1) * s - p + 1))
    return [Multipliers("index", 1, ix0.width, ix0.signed, b.bit_length(), False)]


def _conv_facts(q: QConv) -> tuple[int, int]:
    """(accumulator bits, weight bits) exactly as hw/mvu.py derives them from the weights."""
    w = np.asarray(q.weight)
    return q.acc_bits, bits_for_signed(min(int(w.min()), 0), max(int(w.max()), 0))


@dataclass(frozen=True)
class ConvPlan:
    """A conv on a folded matrix-vector unit (hw/mvu.py), with its sliding window when KxK/strided."""
    name: str
    geometry: Stage
    simd: int
    pe: int
    window_lanes: int        # 0: no sliding window in front (1x1, stride 1)
    acc_bits: int
    w_bits: int              # weight bits derived from the weights (the memory's lane width)
    in_signed: bool
    requant: str
    multiplier: str
    out_buffer: int          # extra output-FIFO entries (decided by the sizing pass)
    layer: QConv = field(compare=False, repr=False)
    kind: str = "conv"
    # the weight encoding: None = dense memory; a squeezehw.quant.sparse_weights.PackedWeights =
    # codebook + dense-index/bitmap stream read through a WeightDecoder (hw/weight_decoder.py)
    weight_code: object = field(default=None, compare=False, repr=False)
    # words per bank of a banked dense weight memory (hw/mvu.py; Target.weight_bank_depth), None: one
    weight_bank_depth: int | None = None
    timing_registers: bool = True        # Target.timing_registers (the MVU's and the window's)

    @property
    def in_lanes(self) -> int:
        return self.window_lanes or self.simd

    @property
    def out_lanes(self) -> int:
        return self.pe

    @property
    def sf(self) -> int:
        return self.geometry.vector // self.simd

    @property
    def nf(self) -> int:
        return self.geometry.out_ch // self.pe

    @property
    def weight_depth(self) -> int:
        return self.sf * self.nf

    @property
    def weight_width(self) -> int:
        return self.pe * self.simd * self.w_bits

    @property
    def weight_banks(self) -> int:
        return 1 if self.weight_bank_depth is None else -(-self.weight_depth // self.weight_bank_depth)

    @property
    def out_fifo_depth(self) -> int:
        from ..hw.mvu import mvu_latency
        return mvu_latency(self.requant, self.sf, banked=self.weight_banks > 1) + 1 + self.out_buffer

    def cycles(self) -> int:
        return self.geometry.cycles(self.simd, self.pe)

    def multipliers(self) -> tuple[Multipliers, ...]:
        out = [Multipliers("mac", self.simd * self.pe, self.w_bits, True, 8, self.in_signed)]
        if self.window_lanes:
            out += window_index_multipliers(self.geometry, self.window_lanes)
        if self.requant == "parallel":
            # hw/mvu.py stage 5: an accumulator wider than 18 bits is split at bit 17 into an
            # unsigned low part and a signed high part, each with its own multiplier
            if self.acc_bits > 18:
                out += [Multipliers("requant", self.pe, 17, False, MULT_BITS, False),
                        Multipliers("requant", self.pe, self.acc_bits - 17, True, MULT_BITS, False)]
            else:
                out.append(Multipliers("requant", self.pe, self.acc_bits, True, MULT_BITS, False))
        return tuple(out)

    def row(self) -> dict:
        return {"layer": self.name, "kind": "conv", "simd": self.simd, "pe": self.pe, "cycles": self.cycles(),
                "multipliers": self.simd * self.pe, "macs": self.geometry.macs,
                "weight_bits": self.geometry.weight_bits(), "acc_bits": self.acc_bits,
                "weight_format": "dense" if self.weight_code is None else self.weight_code.stream.fmt,
                "weight_memory_bits": self.weight_memory_bits,
                "requant_multipliers": sum(m.count for m in self.multipliers() if m.role == "requant"),
                "window_lanes": self.window_lanes, "out_fifo_depth": self.out_fifo_depth,
                **({"weight_banks": self.weight_banks} if self.weight_banks > 1 else {})}

    @property
    def weight_memory_bits(self) -> int:
        """Bits of the weight memory as built: the packed compressed stream (codebook held in
        logic), else the dense PE x SIMD words."""
        if self.weight_code is not None:
            return self.weight_code.memory_bits
        return self.nf * self.sf * self.pe * self.simd * self.w_bits

    def block(self):
        from ..hw.mvu import MVU
        return MVU.from_qconv(self.layer, simd=self.simd, pe=self.pe, out_buffer=self.out_buffer,
                              requant=self.requant, multiplier=self.multiplier, weight_code=self.weight_code,
                              weight_bank_depth=self.weight_bank_depth, timing_registers=self.timing_registers)

    def window_block(self):
        from ..hw.window import SlidingWindow
        if not self.window_lanes:
            return None
        g, q = self.geometry, self.layer
        return SlidingWindow(channels=g.in_ch, height=g.in_hw[0], width=g.in_hw[1], kernel=q.kernel,
                             stride=q.stride, padding=q.padding, lanes=self.window_lanes,
                             timing_registers=self.timing_registers)


@dataclass(frozen=True)
class PoolPlan:
    """A max-pool (hw/maxpool.py) and the rate-smoothing FIFO after it."""
    name: str
    geometry: Stage
    lanes: int
    out_fifo_depth: int
    fifo_output_register: bool = True     # Target.fifo_output_register
    kind: str = "pool"

    @property
    def in_lanes(self) -> int:
        return self.lanes

    @property
    def out_lanes(self) -> int:
        return self.lanes

    @property
    def simd(self) -> int:
        return self.lanes

    def cycles(self) -> int:
        return self.geometry.cycles(self.lanes)

    def multipliers(self) -> tuple[Multipliers, ...]:
        return ()

    def row(self) -> dict:
        return {"layer": self.name, "kind": "pool", "simd": self.lanes, "pe": 1, "cycles": self.cycles(),
                "multipliers": 0, "macs": 0, "weight_bits": 0, "out_fifo_depth": self.out_fifo_depth}

    def block(self):
        from ..hw.maxpool import MaxPool
        g = self.geometry
        return MaxPool(channels=g.in_ch, height=g.in_hw[0], width=g.in_hw[1], lanes=self.lanes,
                       kernel=g.kernel, stride=g.stride, fifo_output_register=self.fifo_output_register)

    def fifo_block(self):
        from ..hw.fifo import StreamFIFO
        return StreamFIFO(width=8 * self.lanes, depth=self.out_fifo_depth,
                          output_register=self.fifo_output_register)


@dataclass(frozen=True)
class FirePlan:
    """A Fire module (hw/fire.py): squeeze, expand1x1 || window + expand3x3, concat [, bypass add]."""
    name: str
    height: int
    width: int
    in_ch: int
    in_lanes: int
    out_lanes: int
    squeeze: ConvPlan
    expand1x1: ConvPlan
    expand3x3: ConvPlan
    bypass_conv: ConvPlan | None
    bypass: str | None               # None, "simple" or "complex"
    buffers: FireBuffers             # every FIFO depth and output buffer (fifo_sizing.size_fire)
    multiplier: str
    requant: str
    layer: QFire = field(compare=False, repr=False)
    fifo_output_register: bool = True     # Target.fifo_output_register
    timing_registers: bool = True         # Target.timing_registers
    kind: str = "fire"

    @property
    def convs(self) -> tuple[ConvPlan, ...]:
        return tuple(c for c in (self.squeeze, self.expand1x1, self.expand3x3, self.bypass_conv) if c)

    @property
    def fifos(self) -> FireFifos:
        return self.buffers.fifos

    @property
    def bypass_lanes(self) -> int:
        return {"simple": self.in_lanes, "complex": self.bypass_conv.pe if self.bypass_conv else 0}.get(self.bypass, 0)

    def cycles(self) -> int:
        return max(c.cycles() for c in self.convs)

    def multipliers(self) -> tuple[Multipliers, ...]:
        out = [m for c in self.convs for m in c.multipliers()]
        if self.bypass:
            # hw/bypass_add.py: per output lane a (uint8 x mult_a) and b (uint8/int8 x mult_b)
            b_signed = self.bypass_conv is not None and not self.bypass_conv.layer.relu
            out += [Multipliers("add", self.out_lanes, 8, False, MULT_BITS, False),
                    Multipliers("add", self.out_lanes, 8, b_signed, MULT_BITS, False)]
        return tuple(out)

    def block(self):
        from ..hw.fire import FireEngine
        b = self.buffers
        return FireEngine(fire=self.layer, height=self.height, width=self.width, in_lanes=self.in_lanes,
                          folds={c.name: c for c in self.convs}, out_lanes=self.out_lanes,
                          window_lanes=self.expand3x3.window_lanes,
                          fifo_depths=(b.fifos.expand1x1_depth, b.fifos.bypass_depth),
                          cat_fifo_depths=(b.cat_a_depth, b.cat_b_depth),
                          out_buffers=(b.e1_out_buffer, b.e3_out_buffer),
                          requant=self.requant, multiplier=self.multiplier,
                          fifo_output_register=self.fifo_output_register,
                          timing_registers=self.timing_registers)


@dataclass(frozen=True)
class HeadPlan:
    """The final conv (ReLU) and the global sum pool with argmax (hw/head.py)."""
    name: str
    conv: ConvPlan
    pixels: int
    layer: QHead = field(compare=False, repr=False)
    kind: str = "head"

    @property
    def in_lanes(self) -> int:
        return self.conv.simd

    out_lanes = None

    def cycles(self) -> int:
        return self.conv.cycles()

    def multipliers(self) -> tuple[Multipliers, ...]:
        return self.conv.multipliers()

    def block(self):
        from ..hw.head import Head
        c = self.conv
        return Head(qhead=self.layer, pixels=self.pixels, simd=c.simd, pe=c.pe, requant=c.requant,
                    multiplier=c.multiplier, weight_code=c.weight_code, weight_bank_depth=c.weight_bank_depth,
                    timing_registers=c.timing_registers)


def _conv_plan(q: QConv, geo: Stage, fold, target: Target, out_buffer: int = 0, facts=None,
               codes=None) -> ConvPlan:
    acc_bits, w_bits = (facts or {}).get(q.name) or _conv_facts(q)
    code = (codes or {}).get(q.name)
    depth = geo.vector // fold.simd * (geo.out_ch // fold.pe)
    # compressed weights are read through a WeightDecoder: never banked
    bank_depth = None if code is not None else target.weight_bank_depth(fold.pe * fold.simd * w_bits, depth)
    return ConvPlan(name=q.name, geometry=geo, simd=fold.simd, pe=fold.pe,
                    window_lanes=window_lanes(geo.in_ch, fold.simd, geo.out_ch // fold.pe) if geo.windowed else 0,
                    acc_bits=acc_bits, w_bits=w_bits, in_signed=bool(q.in_signed), requant=target.requant,
                    multiplier=target.multiplier, out_buffer=out_buffer, layer=q,
                    weight_code=code, weight_bank_depth=bank_depth, timing_registers=target.timing_registers)


def fire_plan(fire: QFire, *, height: int, width: int, in_lanes: int, folds: dict, target: Target = Target(),
              fifos: FireFifos | None = None, facts: dict | None = None, codes: dict | None = None) -> FirePlan:
    """The plan of one Fire module on a ``height`` x ``width`` map arriving in ``in_lanes`` lanes
    (``folds``: conv name -> LayerFold).  ``fifos`` overrides the sizing pass's skew FIFOs (refused
    below the deadlock minimum with FifoDepthError)."""
    f = fire
    c = f.squeeze.in_ch

    def geo(q, ch):
        from ..frontend.ir import conv_out_size
        ho, wo = conv_out_size(height, q.kernel, q.stride, q.padding), conv_out_size(width, q.kernel, q.stride, q.padding)
        return Stage(q.name, "conv", ch, (height, width), (ho, wo), q.kernel, q.stride, q.padding, q.out_ch, q.w_bits)

    out_lanes = fire_out_lanes(f, folds)
    mode = None if f.bypass is None else ("simple" if f.bypass.conv is None else "complex")
    f_e1, f_e3 = folds[f.expand1x1.name], folds[f.expand3x3.name]
    s = f.squeeze.out_ch
    bypass_lanes = {"simple": in_lanes, "complex": folds[f.bypass.conv.name].pe if mode == "complex" else 0}.get(mode, 0)
    buffers = size_fire(width=width, in_ch=c, squeeze_ch=s, e1_ch=f.expand1x1.out_ch, e3_ch=f.expand3x3.out_ch,
                        e1_simd=f_e1.simd, e1_pe=f_e1.pe, e3_pe=f_e3.pe, out_lanes=out_lanes, bypass=mode,
                        bypass_lanes=bypass_lanes, window_extra=WINDOW_EXTRA_PIXELS, fifos=fifos, name=f.name)
    sq = _conv_plan(f.squeeze, geo(f.squeeze, c), folds[f.squeeze.name], target, facts=facts, codes=codes)
    e1 = _conv_plan(f.expand1x1, geo(f.expand1x1, s), f_e1, target, buffers.e1_out_buffer, facts, codes)
    e3 = _conv_plan(f.expand3x3, geo(f.expand3x3, s), f_e3, target, buffers.e3_out_buffer, facts, codes)
    by = (_conv_plan(f.bypass.conv, geo(f.bypass.conv, c), folds[f.bypass.conv.name], target, facts=facts,
                     codes=codes)
          if mode == "complex" else None)
    return FirePlan(name=f.name, height=height, width=width, in_ch=c, in_lanes=in_lanes, out_lanes=out_lanes,
                    squeeze=sq, expand1x1=e1, expand3x3=e3, bypass_conv=by, bypass=mode, buffers=buffers,
                    multiplier=target.multiplier, requant=target.requant, layer=f,
                    fifo_output_register=target.fifo_output_register,
                    timing_registers=target.timing_registers)


@dataclass(frozen=True)
class Plan:
    """The lowered design: ``stages`` (top-level records in stream order) of ``model`` under
    ``folding`` and ``target``."""
    model: IntModel = field(compare=False, repr=False)
    folding: Folding
    target: Target
    stages: tuple

    # --- the records ---------------------------------------------------------------------------
    def compute_stages(self) -> list:
        """Every conv and pool record in stream order (folding.stages's order)."""
        out = []
        for s in self.stages:
            if s.kind in ("conv", "pool"):
                out.append(s)
            elif s.kind == "fire":
                out += list(s.convs)
            elif s.kind == "head":
                out.append(s.conv)
        return out

    def __getitem__(self, name: str):
        for s in self.compute_stages() + list(self.stages):
            if s.name == name:
                return s
        raise KeyError(name)

    @property
    def in_lanes(self) -> int:
        return self.stages[0].in_lanes

    # --- cost model ----------------------------------------------------------------------------
    def cycles_per_frame(self) -> int:
        return max(s.cycles() for s in self.stages)

    def multipliers(self) -> tuple[Multipliers, ...]:
        return tuple(m for s in self.stages for m in s.multipliers())

    def count(self, role: str) -> int:
        return sum(m.count for m in self.multipliers() if m.role == role)

    def requant_multipliers(self) -> int:
        return self.count("requant")

    def dsp(self, board="ecp5-85f") -> int:
        """DSP cells of ``board`` (a squeezehw.boards.registry name or Board) that every multiplier of the
        design takes (squeezehw.plan.resources.dsp_cells)."""
        from .resources import dsp_cells
        return dsp_cells(self.multipliers(), board)

    def table(self) -> list[dict]:
        return with_utilisation([s.row() for s in self.compute_stages()])

    def summary(self) -> dict:
        return {**summarise(self.table()),
                "requant_multipliers": self.count("requant"), "add_multipliers": self.count("add"),
                "index_multipliers": self.count("index")}

    def fifos(self) -> dict:
        """Skew FIFO depths chosen by the sizing pass, per Fire module."""
        return {s.name: s.fifos.as_dict() for s in self.stages if s.kind == "fire"}

    def stage_fifos(self) -> dict:
        """Rate-smoothing FIFOs between top-level stages: {stage: {"depth", "width", "memory_bits"}}."""
        from ..hw.fifo import StreamFIFO
        out = {}
        for s in self.stages:
            if s.kind == "pool":
                depth = StreamFIFO.built_depth(s.out_fifo_depth)
                out[s.name] = {"depth": depth, "width": 8 * s.lanes, "memory_bits": depth * 8 * s.lanes}
        return out

    # --- hardware ------------------------------------------------------------------------------
    def accelerator(self, **kw):
        """The whole design (hw/accelerator.py) built from this plan."""
        from ..hw.accelerator import Accelerator
        kw.setdefault("reset_tree", self.target.reset_tree)
        return Accelerator(self, **kw)

    @cached_property
    def inventory(self):
        """(memories, blocks) of the elaborated design (squeezehw.plan.resources.design_inventory),
        taken once per plan."""
        from .resources import design_inventory
        return design_inventory(self.accelerator())


def conv_facts(model: IntModel) -> dict:
    """Per conv (accumulator bits, weight bits): what :func:`lower` derives from the weights, to pass
    as ``facts`` when lowering many foldings of one model (auto-fold budgets)."""
    return {q.name: _conv_facts(q) for q in model.convs()}


def lower(model: IntModel, folding: Folding, target: Target | None = None, *,
          fire_fifos: dict | None = None, facts: dict | None = None, weight_codes: dict | None = None) -> Plan:
    """Lower (integer model, folding, target) to a :class:`Plan`.  ``fire_fifos``: {Fire name:
    FireFifos} overriding the sizing pass (never below it); ``facts``: :func:`conv_facts` of the
    model, taken once (it reads every weight); ``weight_codes``: {conv name:
    squeezehw.quant.sparse_weights.PackedWeights}, compressed weights those convs' MVUs read through a
    WeightDecoder (``sparse_weights.encode_model``; each MVU checks its stream decodes to its weights)."""
    target = target or Target()
    folding.validate(model)
    codes = dict(weight_codes or {})
    unknown = sorted(set(codes) - {c.name for c in model.convs()})
    if unknown:
        raise UserError(f"weight_codes name {', '.join(unknown)}, not convs of {model.name}; "
                        f"its convs are {', '.join(c.name for c in model.convs())}")
    geo = {s.name: s for s in stages(model)}
    f = folding
    facts = facts or conv_facts(model)
    records = []
    h, w = model.height, model.width
    for layer in model.layers:
        prev_lanes = records[-1].out_lanes if records else None
        if isinstance(layer, QConv):
            rec = _conv_plan(layer, geo[layer.name], f[layer.name], target, facts=facts, codes=codes)
            h, w = rec.geometry.out_hw
        elif isinstance(layer, QMaxPool):
            g = geo[layer.name]
            lanes = f[layer.name].simd
            rec = PoolPlan(name=layer.name, geometry=g, lanes=lanes, out_fifo_depth=pool_fifo_depth(),
                           fifo_output_register=target.fifo_output_register)
            h, w = g.out_hw
        elif isinstance(layer, QFire):
            in_lanes = prev_lanes if prev_lanes is not None else f[layer.squeeze.name].simd
            rec = fire_plan(layer, height=h, width=w, in_lanes=in_lanes, folds=f.layers, target=target,
                            fifos=(fire_fifos or {}).get(layer.name), facts=facts, codes=codes)
        elif isinstance(layer, QHead):
            conv = _conv_plan(layer.conv, geo[layer.conv.name], f[layer.conv.name], target, facts=facts,
                              codes=codes)
            conv = replace(conv, window_lanes=0)      # the head's MVU takes its vectors directly
            rec = HeadPlan(name=layer.name, conv=conv, pixels=h * w, layer=layer)
        else:
            raise UserError(f"{model.name}: layer {layer.name!r} of type {type(layer).__name__} has no plan "
                            "record (squeezehw/plan/lowering.py)")
        records.append(rec)
    return Plan(model=model, folding=folding, target=target, stages=tuple(records))
