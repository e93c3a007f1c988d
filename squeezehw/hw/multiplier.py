"""RegisteredMultiplier: ``p = a * b`` with its operand registers (and optionally its product
register) inside the multiplier, so that on ECP5 they become the DSP's own registers.

Why: Yosys's ECP5 flow maps ``*`` to a MULT18X18D *without* its input and output registers, so
every multiply was FF -> route to the DSP column -> 3.9 ns multiplier -> route back -> FF, 12-13 ns
in nextpnr's timing model: the ULX3S core clock stayed at 70-82 MHz whatever else was pipelined
(docs/boards.md, "ULX3S timing work").  With ``REG_INPUTA/B`` and ``REG_OUTPUT`` the multiply
runs between registers inside the DSP, and only FF -> DSP and DSP -> FF routes are left.

Behaviour (the same everywhere; latency ``in_reg + out_reg`` cycles):

* ``in_reg``: ``a`` and ``b`` are registered when ``ce`` is high;
* ``out_reg``: the product of the (registered) operands is registered when ``ce`` is high;
  without it ``p`` is combinational from the operand registers.

Implementation: with ``primitive="ecp5"`` (the build plan passes the target's primitive down:
the ULX3S board build, or ``squeezehw build --dsp ecp5``) one ``MULT18X18D`` instance
with ``REG_INPUTA_CLK``/``REG_INPUTB_CLK``/``REG_OUTPUT_CLK`` = ``CLK0`` and every register on
``CE0``; operands are extended to signed 18 bits (``SIGNEDA = SIGNEDB = 1``), so each must fit a
signed 18-bit value (unsigned up to 17 bits).  With ``primitive="generic"`` (the default: Amaranth
simulation, Verilator, other FPGAs) it is plain registers and ``*``, cycle for cycle the same.  The Verilator flow appends
``sim/models/MULT18X18D.v`` (a behavioural model of the modes used here) when a design holds the
primitive, so the ECP5 netlist is simulated too (tests/hw/test_multiplier.py).
"""
from __future__ import annotations

from amaranth.hdl import ClockSignal, Const, Instance, Module, Shape, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..errors import UserError

__all__ = ["RegisteredMultiplier", "DSP_FAMILIES", "check_primitive"]

DSP_FAMILIES = ("generic", "ecp5")      # the ``primitive`` a RegisteredMultiplier can be built as


def check_primitive(primitive: str) -> str:
    if primitive not in DSP_FAMILIES:
        raise UserError(f"multiplier primitive {primitive!r} must be one of {', '.join(DSP_FAMILIES)}")
    return primitive


def _fits_signed18(shape: Shape) -> bool:
    return shape.width <= (18 if shape.signed else 17)


class RegisteredMultiplier(wiring.Component):
    """Ports: ``a``, ``b`` (in, the given shapes), ``ce`` (in, enables every register),
    ``p`` (out, the exact product's shape).  ``primitive``: one of ``DSP_FAMILIES`` (module docstring)."""

    def __init__(self, a_shape, b_shape, *, in_reg: bool = True, out_reg: bool = True, name: str = "mul",
                 primitive: str = "generic"):
        a_shape, b_shape = Shape.cast(a_shape), Shape.cast(b_shape)
        if not in_reg or primitive not in DSP_FAMILIES:
            self._MustUse__silence = True     # refused: not a design element left unused
            check_primitive(primitive)
            raise UserError(f"{name}: a RegisteredMultiplier needs its operand registers (in_reg=True)")
        self.a_shape, self.b_shape = a_shape, b_shape
        self.in_reg, self.out_reg, self.primitive = in_reg, out_reg, primitive
        self.latency = int(in_reg) + int(out_reg)
        width = a_shape.width + b_shape.width
        self.p_shape = signed(width) if (a_shape.signed or b_shape.signed) else Shape(width)
        # operands too wide for one 18x18 DSP stay behavioural (Yosys splits them)
        self.fits_dsp = _fits_signed18(a_shape) and _fits_signed18(b_shape)
        super().__init__({"a": In(a_shape), "b": In(b_shape), "ce": In(1), "p": Out(self.p_shape)})

    def elaborate(self, platform):
        m = Module()
        if self.primitive == "ecp5" and self.fits_dsp:
            self._ecp5(m)
        else:
            self._generic(m)
        return m

    def _generic(self, m):
        ra, rb = Signal(self.a_shape, name="ra"), Signal(self.b_shape, name="rb")
        with m.If(self.ce):
            m.d.sync += [ra.eq(self.a), rb.eq(self.b)]
        product = ra * rb
        if self.out_reg:
            with m.If(self.ce):
                m.d.sync += self.p.eq(product)
        else:
            m.d.comb += self.p.eq(product)

    def _ecp5(self, m):
        a18, b18 = Signal(signed(18), name="a18"), Signal(signed(18), name="b18")
        p36 = Signal(signed(36), name="p36")
        m.d.comb += [a18.eq(self.a), b18.eq(self.b), self.p.eq(p36)]   # sign/zero extension
        reg = "CLK0"
        params = dict(
            p_REG_INPUTA_CLK=reg, p_REG_INPUTA_CE="CE0", p_REG_INPUTA_RST="RST0",
            p_REG_INPUTB_CLK=reg, p_REG_INPUTB_CE="CE0", p_REG_INPUTB_RST="RST0",
            p_REG_INPUTC_CLK="NONE", p_REG_PIPELINE_CLK="NONE",
            p_REG_OUTPUT_CLK=reg if self.out_reg else "NONE", p_REG_OUTPUT_CE="CE0", p_REG_OUTPUT_RST="RST0",
            p_CLK0_DIV="ENABLED", p_CLK1_DIV="ENABLED", p_CLK2_DIV="ENABLED", p_CLK3_DIV="ENABLED",
            p_GSR="DISABLED", p_RESETMODE="SYNC", p_SOURCEB_MODE="B_SHIFT", p_MULT_BYPASS="DISABLED",
            p_CAS_MATCH_REG="FALSE", p_HIGHSPEED_CLK="NONE",
            i_SIGNEDA=Const(1, 1), i_SIGNEDB=Const(1, 1), i_SOURCEA=Const(0, 1), i_SOURCEB=Const(0, 1),
            i_CLK0=ClockSignal(), i_CE0=self.ce, i_RST0=Const(0, 1),
        )
        # SRIA/SRIB (cascade inputs) stay unconnected: nextpnr cannot tie them from the fabric
        params.update({f"i_A{k}": a18[k] for k in range(18)})
        params.update({f"i_B{k}": b18[k] for k in range(18)})
        params.update({f"i_C{k}": Const(0, 1) for k in range(18)})
        params.update({f"o_P{k}": p36[k] for k in range(36)})
        m.submodules.dsp = Instance("MULT18X18D", **params)
