"""RegisteredMultiplier (hw/multiplier.py): the generic form cycle by cycle against a reference,
the ECP5 form's netlist (MULT18X18D with its own registers), and a whole network built with the
ECP5 primitives simulated in Verilator (sim/models/MULT18X18D.v) bit-exact against the golden model;
the same for the Gowin forms (GW5A MULT12X12, GW2A MULT9X9/MULT18X18; sim/models/)."""
import random
import re

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import signed, unsigned
from amaranth.sim import Simulator

from squeezehw.errors import UserError
from squeezehw.hw.multiplier import RegisteredMultiplier
from squeezehw.hw.mvu import MVU


def _value(v: int, shape) -> int:
    return v - (1 << shape.width) if shape.signed and v >> (shape.width - 1) else v


@pytest.mark.parametrize("a_shape,b_shape,out_reg", [
    (signed(8), unsigned(8), True), (signed(8), signed(8), True), (unsigned(17), unsigned(16), True),
    (signed(15), unsigned(16), True), (unsigned(8), unsigned(16), False), (signed(8), unsigned(16), False),
])
def test_generic_form_matches_a_register_model(a_shape, b_shape, out_reg):
    """Operands are taken when ``ce`` is high, the product appears ``latency`` cycles later (held
    while ``ce`` is low): compared cycle by cycle with a Python model of the same registers."""
    dut = RegisteredMultiplier(a_shape, b_shape, out_reg=out_reg)
    assert dut.latency == (2 if out_reg else 1)
    rng = random.Random(3)
    got, want = [], []

    async def bench(ctx):
        ra = rb = 0
        p = 0
        for _ in range(400):
            a, b, ce = rng.randrange(1 << a_shape.width), rng.randrange(1 << b_shape.width), rng.random() < 0.7
            ctx.set(dut.a, _value(a, a_shape))
            ctx.set(dut.b, _value(b, b_shape))
            ctx.set(dut.ce, ce)
            await ctx.delay(1e-9)
            got.append(ctx.get(dut.p))
            want.append(p if out_reg else ra * rb)
            await ctx.tick()
            if ce:
                if out_reg:
                    p = ra * rb
                ra, rb = _value(a, a_shape), _value(b, b_shape)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert got == want


def test_operand_registers_are_required():
    with pytest.raises(UserError, match="in_reg"):
        RegisteredMultiplier(signed(8), unsigned(8), in_reg=False)


def test_unknown_dsp_family_is_refused():
    with pytest.raises(UserError, match="ecp5"):
        RegisteredMultiplier(signed(8), unsigned(8), primitive="ecp7")


def _mvu(acc_wide: bool, multiplier: str = "generic"):
    rng = np.random.default_rng(5)
    n = 64 if acc_wide else 8
    w = rng.integers(-128, 128, size=(4, n))
    return MVU(weights=w, bias=rng.integers(-1000, 1000, size=4), mult=rng.integers(1, 1 << 15, size=4),
               shift=rng.integers(16, 24, size=4), simd=2, pe=2, relu=True, multiplier=multiplier)


@pytest.mark.parametrize("acc_wide", [False, True])
def test_ecp5_form_is_one_registered_mult18x18d_per_multiply(acc_wide):
    mvu = _mvu(acc_wide, "ecp5")
    text = verilog.convert(mvu, name="mvu", emit_src=False)
    dsps = re.findall(r"MULT18X18D #\((.*?)\) \w+ \(", text, re.S)
    split = mvu.acc_bits > 18
    assert split == acc_wide
    # PE*SIMD MACs + per PE one (or two, for a split accumulator) requantisation multipliers
    assert len(dsps) == 2 * 2 + 2 * (2 if split else 1)
    for params in dsps:
        for reg in ("REG_INPUTA_CLK", "REG_INPUTB_CLK", "REG_OUTPUT_CLK"):
            assert re.search(rf"\.{reg}\(\"CLK0\"\)", params), (reg, params)
        assert re.search(r"\.REG_PIPELINE_CLK\(\"NONE\"\)", params)
    # the generic form (the default) has no primitive
    assert "MULT18X18D" not in verilog.convert(_mvu(acc_wide), name="mvu", emit_src=False)


@pytest.mark.slow
def test_network_built_with_ecp5_primitives_is_bit_exact_in_verilator():
    """The ECP5 netlist form (MULT18X18D instances, simulated with sim/models/MULT18X18D.v) of a
    random model with a simple and a complex bypass, under random gaps and back-pressure."""
    pytest.importorskip("cocotb")
    from squeezehw.sim.simulate import build_for, simulate_frames

    from squeezehw.plan.folding import default_folding
    from squeezehw.plan.lowering import Target
    from squeezehw.quant.random_model import random_model
    from squeezehw.toolchain.verilator import SimTraffic
    rng = np.random.default_rng(11)
    model = random_model(rng, size=10, classes=6)
    x = rng.integers(0, 256, size=(3, 1, 10, 10), dtype=np.uint8)
    ecp5 = Target(multiplier="ecp5")
    b = build_for(model, default_folding(model), len(x), progress=False, target=ecp5)
    rep = simulate_frames(model, default_folding(model), x, traffic=SimTraffic.rough(4), progress=False,
                          target=ecp5)
    text = b.verilog.read_text()
    assert "MULT18X18D #(" in text and "module MULT18X18D(" in text     # primitives + their model
    assert rep.bit_exact, rep.mismatches


@pytest.mark.parametrize("acc_wide", [False, True])
def test_gw5a_form_is_one_registered_mult12x12_per_mac(acc_wide):
    """GW5A: every int8 MAC is a MULT12X12 with its A/B and output registers on CLK0/CE0; the
    requantisation multiplies (accumulator x 16 bits) do not fit 12 x 12 and are MULTALU27X18s
    in plain multiplier mode (split at bit 17 as for ECP5 when the accumulator is wider)."""
    mvu = _mvu(acc_wide, "gw5a")
    text = verilog.convert(mvu, name="mvu", emit_src=False)
    dsps = re.findall(r"MULT12X12 #\((.*?)\) \w+ \(", text, re.S)
    assert len(dsps) == 2 * 2
    for params in dsps:
        for reg in ("AREG_CLK", "BREG_CLK", "OREG_CLK"):
            assert re.search(rf"\.{reg}\(\"CLK0\"\)", params), (reg, params)
        assert re.search(r"\.PREG_CLK\(\"BYPASS\"\)", params)
    alus = re.findall(r"MULTALU27X18 #\((.*?)\) \w+ \(", text, re.S)
    assert len(alus) == 2 * (2 if mvu.acc_bits > 18 else 1)
    for params in alus:
        for reg in ("AREG_CLK", "BREG_CLK", "OREG_CLK"):
            assert re.search(rf"\.{reg}\(\"CLK0\"\)", params), (reg, params)
        assert re.search(r"\.P_SEL\(1'h0\)", params) and re.search(r"\.ACC_SEL\(1'h0\)", params)
    assert "MULT18X18D" not in text and " * " not in text


@pytest.mark.parametrize("acc_wide", [False, True])
def test_gw2a_form_uses_registered_mult9x9_and_mult18x18(acc_wide):
    mvu = _mvu(acc_wide, "gw2a")
    text = verilog.convert(mvu, name="mvu", emit_src=False)
    m9 = re.findall(r"MULT9X9 #\((.*?)\) \w+ \(", text, re.S)
    m18 = re.findall(r"MULT18X18 #\((.*?)\) \w+ \(", text, re.S)
    assert len(m9) == 2 * 2                                   # the MACs
    assert len(m18) == 2 * (2 if mvu.acc_bits > 18 else 1)   # requantisation, split as on ECP5
    for params in m9 + m18:
        for reg in ("AREG", "BREG", "OUT_REG", "ASIGN_REG", "BSIGN_REG"):
            assert re.search(rf"\.{reg}\(1'h1\)", params), (reg, params)
        assert re.search(r"\.PIPE_REG\(1'h0\)", params)


def test_gowin_boards_select_their_dsp_form():
    """The board registry names each Gowin board's multiplier primitive; a build for the board
    (squeezehw build --board B) takes it from there."""
    from squeezehw.boards.registry import get_board

    from squeezehw.plan.config import BuildConfig
    assert get_board("tang-mega-138k-pro").multiplier == "gw5a"
    assert get_board("tang-primer-20k").multiplier == "gw2a"
    assert BuildConfig(board="tang-mega-138k-pro").target().multiplier == "gw5a"


@pytest.mark.slow
@pytest.mark.parametrize("family", ["gw5a", "gw2a"])
def test_network_built_with_gowin_primitives_is_bit_exact_in_verilator(family):
    """The Gowin netlist forms (simulated with sim/models/MULT12X12.v, MULT9X9.v, MULT18X18.v) of a
    random model with a simple and a complex bypass, under random gaps and back-pressure."""
    pytest.importorskip("cocotb")
    from squeezehw.sim.simulate import build_for, simulate_frames

    from squeezehw.plan.folding import default_folding
    from squeezehw.quant.random_model import random_model
    from squeezehw.toolchain.verilator import SimTraffic
    rng = np.random.default_rng(11)
    model = random_model(rng, size=10, classes=6)
    x = rng.integers(0, 256, size=(3, 1, 10, 10), dtype=np.uint8)
    from squeezehw.plan.lowering import Target
    b = build_for(model, default_folding(model), len(x), progress=False, target=Target(multiplier=family))
    rep = simulate_frames(model, default_folding(model), x, traffic=SimTraffic.rough(4), progress=False,
                          target=Target(multiplier=family))
    text = b.verilog.read_text()
    cells = ("MULT12X12", "MULTALU27X18") if family == "gw5a" else ("MULT9X9", "MULT18X18")
    for cell in cells:
        assert f"{cell} #(" in text and f"module {cell}(" in text     # primitives + their model
    assert rep.bit_exact, rep.mismatches
