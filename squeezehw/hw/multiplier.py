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

Gowin (``"gw5a"``: GW5A/GW5AST, e.g. the Tang Mega 138K; ``"gw2a"``: GW2A, e.g. the Tang Primer 20K;
chosen by the build plan: the Gowin boards' registry entry, or ``--dsp gw5a/gw2a``): Yosys's ``synth_gowin -family
gw5a`` maps no multiply to a DSP at all (they become fabric logic), so on GW5A each multiply whose
operands fit signed 12 bits (unsigned up to 11) is one ``MULT12X12`` (half a DSP block) with
``AREG``/``BREG`` and ``OREG`` on ``CLK0``/``CE0``; a wider one whose operands fit signed 27 x 18
(the requantisation ``acc x mult`` and the bypass add's ``x x mult``) is one ``MULTALU27X18`` (a whole
block, multiply only: no pre-adder, C = 0, no accumulation) with the same registers; without it each
of those became a 20 x 16 multiplier in LUTs (about 15,000 LUT4 for the default model).  On GW2A Yosys does infer ``MULT9X9``/``MULT18X18``,
but without their registers; ``"gw2a"`` instantiates ``MULT9X9`` (operands up to signed 9 bits) or
``MULT18X18`` (up to signed 18) with ``AREG``/``BREG``/``OUT_REG``.  Models: ``sim/models/MULT12X12.v``,
``sim/models/MULTALU27X18.v``, ``sim/models/MULT9X9.v``, ``sim/models/MULT18X18.v``; wider multiplies
stay behavioural.
"""
from __future__ import annotations

from amaranth.hdl import Cat, ClockSignal, Const, Instance, Module, Shape, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..errors import UserError

__all__ = ["RegisteredMultiplier", "DSP_FAMILIES", "check_primitive"]

DSP_FAMILIES = ("generic", "ecp5", "gw5a", "gw2a")      # the ``primitive`` a RegisteredMultiplier can be built as


def check_primitive(primitive: str) -> str:
    if primitive not in DSP_FAMILIES:
        raise UserError(f"multiplier primitive {primitive!r} must be one of {', '.join(DSP_FAMILIES)}")
    return primitive


def _fits_signed(shape: Shape, bits: int) -> bool:
    return shape.width <= (bits if shape.signed else bits - 1)


def _fits_signed18(shape: Shape) -> bool:
    return _fits_signed(shape, 18)


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
        family = self.primitive
        if family == "ecp5" and self.fits_dsp:
            self._ecp5(m)
        elif family == "gw5a" and self.fits_bits(12):
            self._gw5a(m)
        elif family == "gw5a" and self.fits_27x18() is not None:
            self._gw5a_27x18(m, swap=self.fits_27x18())
        elif family == "gw2a" and self.fits_dsp:
            self._gw2a(m, 9 if self.fits_bits(9) else 18)
        else:
            self._generic(m)
        return m

    def fits_bits(self, bits: int) -> bool:
        """Both operands fit a signed ``bits``-bit multiplier input."""
        return _fits_signed(self.a_shape, bits) and _fits_signed(self.b_shape, bits)

    def fits_27x18(self) -> bool | None:
        """None if the operands fit no signed 27 x 18 multiplier, else whether to swap them (b on A)."""
        if _fits_signed(self.a_shape, 27) and _fits_signed(self.b_shape, 18):
            return False
        if _fits_signed(self.a_shape, 18) and _fits_signed(self.b_shape, 27):
            return True
        return None

    def _generic(self, m):
        # data registers without a reset (their valid travels beside them), so that a tool's DSP
        # inference can take them into the DSP: Yosys's ice40_dsp left reset registers in the
        # fabric, one flip-flop-only logic cell per bit on the iCE40
        ra = Signal(self.a_shape, name="ra", reset_less=True)
        rb = Signal(self.b_shape, name="rb", reset_less=True)
        with m.If(self.ce):
            m.d.sync += [ra.eq(self.a), rb.eq(self.b)]
        product = ra * rb
        if self.out_reg:
            rp = Signal(self.p.shape(), name="rp", reset_less=True)
            with m.If(self.ce):
                m.d.sync += rp.eq(product)
            m.d.comb += self.p.eq(rp)
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

    def _gw5a(self, m):
        # MULT12X12: signed 12 x 12 -> 24; CLK/CE/RESET are 2-bit buses, every register on CLK0/CE0
        a12, b12 = Signal(signed(12), name="a12"), Signal(signed(12), name="b12")
        p24 = Signal(signed(24), name="p24")
        m.d.comb += [a12.eq(self.a), b12.eq(self.b), self.p.eq(p24)]   # sign/zero extension
        m.submodules.dsp = Instance(
            "MULT12X12",
            p_AREG_CLK="CLK0", p_AREG_CE="CE0", p_AREG_RESET="RESET0",
            p_BREG_CLK="CLK0", p_BREG_CE="CE0", p_BREG_RESET="RESET0",
            p_PREG_CLK="BYPASS", p_PREG_CE="CE0", p_PREG_RESET="RESET0",
            p_OREG_CLK="CLK0" if self.out_reg else "BYPASS", p_OREG_CE="CE0", p_OREG_RESET="RESET0",
            p_MULT_RESET_MODE="SYNC",
            i_A=a12, i_B=b12, i_CLK=Cat(ClockSignal(), Const(0, 1)), i_CE=Cat(self.ce, Const(0, 1)),
            i_RESET=Const(0, 2), o_DOUT=p24)

    def _gw2a(self, m, bits: int):
        # MULT9X9 / MULT18X18 with the operand signs as inputs (always signed here: operands are
        # sign/zero-extended to `bits`); the sign inputs are registered with the operands
        a, b = Signal(signed(bits), name=f"a{bits}"), Signal(signed(bits), name=f"b{bits}")
        p = Signal(signed(2 * bits), name=f"p{2 * bits}")
        m.d.comb += [a.eq(self.a), b.eq(self.b), self.p.eq(p)]
        m.submodules.dsp = Instance(
            f"MULT{bits}X{bits}",
            p_AREG=Const(1, 1), p_BREG=Const(1, 1), p_OUT_REG=Const(int(self.out_reg), 1),
            p_PIPE_REG=Const(0, 1), p_ASIGN_REG=Const(1, 1), p_BSIGN_REG=Const(1, 1), p_SOA_REG=Const(0, 1),
            p_MULT_RESET_MODE="SYNC",
            i_A=a, i_B=b, i_SIA=Const(0, bits), i_SIB=Const(0, bits), i_ASIGN=Const(1, 1), i_BSIGN=Const(1, 1),
            i_ASEL=Const(0, 1), i_BSEL=Const(0, 1), i_CLK=ClockSignal(), i_CE=self.ce, i_RESET=Const(0, 1),
            o_DOUT=p)

    def _gw5a_27x18(self, m, swap: bool):
        # MULTALU27X18 as a plain registered multiplier: DOUT = A * B (signed 27 x 18 -> 45 bits,
        # sign-extended to 48); P_SEL = 0 (no pre-adder), A_SEL = 0 (A from the fabric), C_SEL = 1
        # with C = 0, CASI_SEL = ACC_SEL = 0 (no cascade, no accumulation)
        a27, b18 = Signal(signed(27), name="a27"), Signal(signed(18), name="b18")
        p48 = Signal(signed(48), name="p48")
        wide, narrow = (self.b, self.a) if swap else (self.a, self.b)
        m.d.comb += [a27.eq(wide), b18.eq(narrow), self.p.eq(p48)]
        m.submodules.dsp = Instance(
            "MULTALU27X18",
            p_AREG_CLK="CLK0", p_AREG_CE="CE0", p_AREG_RESET="RESET0",
            p_BREG_CLK="CLK0", p_BREG_CE="CE0", p_BREG_RESET="RESET0",
            p_PREG_CLK="BYPASS", p_OREG_CLK="CLK0" if self.out_reg else "BYPASS", p_OREG_CE="CE0",
            p_OREG_RESET="RESET0", p_MULT_RESET_MODE="SYNC",
            p_DYN_P_SEL="FALSE", p_P_SEL=Const(0, 1), p_DYN_P_ADDSUB="FALSE", p_P_ADDSUB=Const(0, 1),
            p_DYN_A_SEL="FALSE", p_A_SEL=Const(0, 1), p_DYN_ADD_SUB_0="FALSE", p_ADD_SUB_0=Const(0, 1),
            p_DYN_ADD_SUB_1="FALSE", p_ADD_SUB_1=Const(0, 1), p_DYN_C_SEL="FALSE", p_C_SEL=Const(1, 1),
            p_DYN_CASI_SEL="FALSE", p_CASI_SEL=Const(0, 1), p_DYN_ACC_SEL="FALSE", p_ACC_SEL=Const(0, 1),
            p_MULT12X12_EN="FALSE",
            i_A=a27, i_SIA=Const(0, 27), i_B=b18, i_C=Const(0, 48), i_D=Const(0, 26), i_CASI=Const(0, 48),
            i_ACCSEL=0, i_PSEL=0, i_ASEL=0, i_PADDSUB=0, i_CSEL=0, i_CASISEL=0, i_ADDSUB=Const(0, 2),
            i_CLK=Cat(ClockSignal(), Const(0, 1)), i_CE=Cat(self.ce, Const(0, 1)), i_RESET=Const(0, 2),
            o_DOUT=p48)
