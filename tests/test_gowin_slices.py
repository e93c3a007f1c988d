"""Gowin LUT positions (squeezehw.toolchain.gowin_slices): a flip-flop that no LUT of its own feeds
takes a LUT position, as nextpnr-himbaechel packs it."""
import pytest
from amaranth import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from squeezehw.errors import ToolMissingError
from squeezehw.toolchain.gowin_slices import slice_positions
from squeezehw.toolchain.synth import find_tool, synthesize


def _cell(kind, outputs=None, **conns):
    outputs = outputs or {}
    return {"type": kind, "port_directions": {**{p: "input" for p in conns}, **{p: "output" for p in outputs}},
            "connections": {**{p: [b] for p, b in conns.items()}, **{p: [b] for p, b in outputs.items()}}}


def test_pairs_one_flip_flop_per_lut_and_counts_the_rest():
    cells = {
        "lut": _cell("LUT4", {"F": 10}, I0=2),
        "ff_a": _cell("DFFE", {"Q": 11}, D=10, CE=3),       # paired with the LUT
        "ff_b": _cell("DFFE", {"Q": 12}, D=10, CE=3),       # the LUT's second flip-flop: unpaired
        "ff_c": _cell("DFFRE", {"Q": 13}, D=11, CE=3),      # fed by a flip-flop
        "alu": _cell("ALU", {"SUM": 14}, I0=2),
        "ff_d": _cell("DFF", {"Q": 15}, D=14),               # fed by an ALU
        "ff_e": _cell("DFF", {"Q": 16}, D="0"),              # constant
    }
    r = slice_positions({"modules": {"top": {"cells": cells}}}, "top")
    assert (r["lut"], r["alu"], r["ff"], r["ff_paired"], r["ff_unpaired"]) == (1, 1, 5, 1, 4)
    assert r["positions"] == 1 + 1 + 4
    assert r["unpaired_by_driver"] == {"LUT4": 1, "DFFE": 1, "ALU": 1, "constant": 1}
    with pytest.raises(KeyError, match="no module"):
        slice_positions({"modules": {}}, "top")


class ShiftRegister(wiring.Component):
    """``n`` bytes rotating on an enable: flip-flops fed by flip-flops (a MaxPool's old banks)."""

    def __init__(self, n=16):
        self.n = n
        super().__init__({"d": In(8), "en": In(1), "q": Out(8)})

    def elaborate(self, platform):
        m = Module()
        regs = [Signal(8, name=f"r{i}") for i in range(self.n)]
        with m.If(self.en):
            m.d.sync += [regs[0].eq(self.d)] + [regs[i].eq(regs[i - 1]) for i in range(1, self.n)]
        m.d.comb += self.q.eq(regs[-1])
        return m


def test_yosys_netlist_of_a_shift_register(tmp_path):
    """Yosys only (seconds): the shift register's bytes after the first are flip-flops fed by
    flip-flops; each needs a LUT position that Yosys's LUT count does not show."""
    try:
        find_tool("yosys")
    except ToolMissingError as e:
        pytest.skip(str(e))
    r = synthesize(ShiftRegister(16), board="tang-mega-138k-pro", out_dir=tmp_path, top="shift",
                   place_and_route=False, progress=False)
    s = slice_positions(tmp_path / "synth.json", "shift")
    assert s["ff"] == r.ff >= 16 * 8
    assert s["ff_unpaired"] >= 15 * 8
    assert s["positions"] >= s["lut"] + 15 * 8 > r.lut
