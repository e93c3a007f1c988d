"""Fire engine: squeeze -> fork -> (expand1x1 || window 3x3 + expand3x3) -> concat [-> bypass add].

Dataflow (lanes in brackets; a Resize appears wherever two neighbours disagree on lanes)::

      i ──[fork]──(bypass: FIFO, or 1x1 MVU + FIFO)────────────────────────────┐
          │                                                                      │
          └─ squeeze MVU ──fork──► FIFO ──► expand1x1 MVU ──► concat.a ──► add.a ◄┘──► o
                             └──► 3x3 window ──► expand3x3 MVU ──► concat.b

(The window runs at the expand3x3's SIMD when that divides the squeeze channels, else at one tap
per beat with a Resize regrouping the 3x3 vector: squeezehw.plan.folding.window_lanes.)

The FIFO before expand1x1 absorbs the row of skew of the 3x3 branch and the bypass FIFO the skew
of the whole module; their depths, the concat FIFOs and the expand units' output buffers come from
the sizing pass (squeezehw.plan.fifo_sizing.size_fire, see there for why) through the build plan
(squeezehw/plan/lowering.py ``FirePlan``), as constructor arguments.
"""
from amaranth import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..quant.intmodel import QFire
from .bypass_add import BypassAdd
from .concat import Concat
from .fifo import StreamFIFO
from .fork import Fork
from .mvu import MVU
from .reset_tree import in_local_reset
from .resize import Resize
from .window import SlidingWindow

__all__ = ["FireEngine", "Chain"]


class Chain:
    """Connects blocks in a line, inserting a Resize where lane counts differ.

    ``reset_levels`` > 0: each block added runs on a reset that many registers down a reset tree
    (squeezehw/hw/reset_tree.py); ``add(..., reset_levels=k)`` overrides it for one block (a
    container that adds the remaining levels itself)."""

    def __init__(self, m: Module, prefix: str, reset_levels: int = 0):
        self.m, self.prefix, self.blocks, self.reset_levels = m, prefix, [], reset_levels

    def add(self, name: str, block, reset_levels: int | None = None):
        levels = self.reset_levels if reset_levels is None else reset_levels
        full = f"{self.prefix}{name}"
        self.m.submodules[full] = in_local_reset(self.m, full, block, levels)
        self.blocks.append((name, block))
        return block

    def link(self, src, src_lanes: int, dst, dst_lanes: int, channels: int, name: str):
        """Connect stream ``src`` (out) to ``dst`` (in) through a width converter if needed."""
        if src_lanes != dst_lanes:
            r = self.add(f"{name}_resize", Resize(in_lanes=src_lanes, out_lanes=dst_lanes, channels=channels))
            wiring.connect(self.m, src, r.i)
            src = r.o
        wiring.connect(self.m, src, dst)


class FireEngine(wiring.Component):
    """One Fire module, built from a ``squeezehw.plan.lowering.FirePlan`` (``FirePlan.block()``).

    ``folds`` maps conv names to their (simd, pe) (anything with ``.simd`` and ``.pe``);
    ``in_lanes`` is the lane count of the incoming stream, ``out_lanes`` the concat's,
    ``window_lanes`` the 3x3 window's.  ``fifo_depths`` = (expand1x1 skew FIFO, bypass FIFO),
    ``cat_fifo_depths`` = (expand1x1 -> concat, expand3x3 -> concat) FIFOs (0: none),
    ``out_buffers`` = extra output entries of (expand1x1, expand3x3).  ``requant`` and
    ``multiplier``: every MVU's requantiser mode and multiplier primitive;
    ``fifo_output_register``: the FIFOs' (hw/fifo.py ``output_register``); ``timing_registers``:
    the window's and the MVUs' (hw/window.py, hw/mvu.py)."""

    def __init__(self, *, fire: QFire, height: int, width: int, in_lanes: int, folds: dict,
                 out_lanes: int, window_lanes: int, fifo_depths: tuple, cat_fifo_depths: tuple,
                 out_buffers: tuple, requant: str = "parallel", multiplier: str = "generic",
                 fifo_output_register: bool = True, timing_registers: bool = True):
        self.fire, self.height, self.width, self.in_lanes = fire, height, width, in_lanes
        f = fire
        self.f_sq, self.f_e1, self.f_e3 = folds[f.squeeze.name], folds[f.expand1x1.name], folds[f.expand3x3.name]
        self.out_lanes = out_lanes
        self.mode = None if f.bypass is None else ("simple" if f.bypass.conv is None else "complex")
        self.f_by = folds[f.bypass.conv.name] if self.mode == "complex" else None
        self.e1_fifo_depth, self.bypass_fifo_depth = fifo_depths
        self.cat_fifo_depths = tuple(cat_fifo_depths)
        self.e1_out_buffer, self.e3_out_buffer = out_buffers
        self.requant, self.multiplier = requant, multiplier
        self.fifo_output_register = fifo_output_register
        self.timing_registers = timing_registers
        # levels of a reset tree inside (squeezehw/hw/reset_tree.py): set by the Accelerator, which
        # gates the ports; 0 when the Fire engine is used on its own
        self.reset_levels = 0
        self.window = SlidingWindow(channels=f.squeeze.out_ch, height=height, width=width, kernel=3, stride=1,
                                    padding=1, lanes=window_lanes, timing_registers=timing_registers)
        super().__init__({
            "i": In(stream.Signature(8 * in_lanes)),
            "o": Out(stream.Signature(8 * self.out_lanes)),
        })

    def _mvu(self, q, fold, out_buffer=0):
        # a plan record (ConvPlan) may carry compressed weights (squeezehw.quant.sparse_weights.PackedWeights)
        # or a banked weight memory's bank depth
        return MVU.from_qconv(q, simd=fold.simd, pe=fold.pe, out_buffer=out_buffer, requant=self.requant,
                              multiplier=self.multiplier, weight_code=getattr(fold, "weight_code", None),
                              weight_bank_depth=getattr(fold, "weight_bank_depth", None),
                              timing_registers=self.timing_registers)

    def _fifo(self, width, depth):
        return StreamFIFO(width=width, depth=depth, output_register=self.fifo_output_register)

    @property
    def bypass_lanes(self) -> int:
        """Lanes of the stream held in the bypass FIFO."""
        if self.mode == "simple":
            return self.in_lanes
        if self.mode == "complex":
            return self.f_by.pe
        return 0

    def mvus(self) -> dict:
        f = self.fire
        out = {f.squeeze.name: (f.squeeze, self.f_sq), f.expand1x1.name: (f.expand1x1, self.f_e1),
               f.expand3x3.name: (f.expand3x3, self.f_e3)}
        if self.mode == "complex":
            out[f.bypass.conv.name] = (f.bypass.conv, self.f_by)
        return out

    def elaborate(self, platform):
        m = Module()
        f, c = self.fire, Chain(m, "", reset_levels=self.reset_levels)
        self.chain_blocks = c.blocks     # (name, block) of the last elaboration, for profiling
        s, e1, e3 = f.squeeze.out_ch, f.expand1x1.out_ch, f.expand3x3.out_ch
        lo = self.out_lanes

        sq = c.add("squeeze", self._mvu(f.squeeze, self.f_sq))
        if self.mode:
            fin = c.add("in_fork", Fork(width=8 * self.in_lanes, n=2))
            wiring.connect(m, wiring.flipped(self.i), fin.i)
            c.link(fin.o0, self.in_lanes, sq.i, self.f_sq.simd, f.squeeze.in_ch, "squeeze_in")
        else:
            c.link(wiring.flipped(self.i), self.in_lanes, sq.i, self.f_sq.simd, f.squeeze.in_ch, "squeeze_in")

        fk = c.add("fork", Fork(width=8 * self.f_sq.pe, n=2))
        wiring.connect(m, sq.o, fk.i)
        # expand1x1 branch, with the skew FIFO in front of the MVU
        fifo1 = c.add("e1_fifo", self._fifo(8 * self.f_e1.simd, self.e1_fifo_depth))
        c.link(fk.o0, self.f_sq.pe, fifo1.i, self.f_e1.simd, s, "e1_in")
        x1 = c.add("expand1x1", self._mvu(f.expand1x1, self.f_e1, self.e1_out_buffer))
        wiring.connect(m, fifo1.o, x1.i)
        # expand3x3 branch
        win = c.add("window", self.window)
        c.link(fk.o1, self.f_sq.pe, win.i, win.lanes, s, "e3_in")
        x3 = c.add("expand3x3", self._mvu(f.expand3x3, self.f_e3, self.e3_out_buffer))
        c.link(win.o, win.lanes, x3.i, self.f_e3.simd, x3.N, "e3_win")
        cat = c.add("concat", Concat(lanes=lo, channels_a=e1, channels_b=e3))
        # The concat takes all of a pixel's expand1x1 beats, then all of its expand3x3 beats.  A
        # side whose MVU is narrower than the concat reaches it through a Resize that converts one
        # narrow beat per cycle and holds a single wide beat, so without a buffer behind it the two
        # sides would fill one after the other (e1/PE1 + e3/PE3 cycles per pixel instead of the
        # larger of the two: this held SqueezeNet v1.1's Fire 2/3 at 92 instead of 72 cycles per
        # pixel).  A FIFO of one pixel of that side (at the concat's lanes) lets both fill at once.
        for side, mvu, pe, ch, port, depth in (("a", x1, self.f_e1.pe, e1, cat.a, self.cat_fifo_depths[0]),
                                               ("b", x3, self.f_e3.pe, e3, cat.b, self.cat_fifo_depths[1])):
            if not depth:
                wiring.connect(m, mvu.o, port)
                continue
            buf = c.add(f"cat_{side}_fifo", self._fifo(8 * lo, depth))
            c.link(mvu.o, pe, buf.i, lo, ch, f"cat_{side}")
            wiring.connect(m, buf.o, port)
        if not self.mode:
            wiring.connect(m, cat.o, wiring.flipped(self.o))
            return m

        add = c.add("add", BypassAdd.from_qadd(f.bypass, lanes=lo, multiplier=self.multiplier))
        wiring.connect(m, cat.o, add.a)
        bl = self.bypass_lanes
        fifo_b = c.add("bypass_fifo", self._fifo(8 * bl, self.bypass_fifo_depth))
        if self.mode == "simple":
            wiring.connect(m, fin.o1, fifo_b.i)
        else:
            by = c.add("bypass", self._mvu(f.bypass.conv, self.f_by))
            c.link(fin.o1, self.in_lanes, by.i, self.f_by.simd, f.squeeze.in_ch, "bypass_in")
            wiring.connect(m, by.o, fifo_b.i)
        c.link(fifo_b.o, bl, add.b, lo, f.out_ch, "add_b")
        wiring.connect(m, add.o, wiring.flipped(self.o))
        return m
