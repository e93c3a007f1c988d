# amaranth: UnusedElaboratable=no
"""Memories spilled to logic (squeezehw.plan.resources.spill_to_logic) and stage-by-stage board
builds (squeezehw.toolchain.stagewise): the RTLIL split is checked without tools; one tiny design
goes through Yosys stage by stage, the join, nextpnr-himbaechel and gowin_pack (about 3 minutes)."""
import collections
import json

import pytest

from squeezehw.errors import ToolMissingError, UserError
from squeezehw.plan.folding import auto_fold
from squeezehw.plan.lowering import Target, lower
from squeezehw.plan.resources import estimate, spill_to_logic
from squeezehw.toolchain import stagewise
from squeezehw.toolchain.synth import _yosys_counts, find_tool, logic_memory_commands
from squeezehw.boards.registry import get_board

MEGA = "tang-mega-138k-pro"

RTLIL = """# Automatically generated
attribute \\generator "Amaranth"
attribute \\top 1
module \\top
  wire width 1 input 0 \\clk
  wire width 8 output 1 \\o
  cell \\top.core \\core
    connect \\clk \\clk
  end
connect \\o 8'00000000
end

attribute \\generator "Amaranth"
module \\top.core
  wire width 1 input 0 \\clk
  wire width 8 output 1 \\q
  wire width 8 \\inner
end

module \\top.core.a
  wire width 4 input 0 \\i
  wire width 4 output 1 \\y
end

module \\top.core.a.sub
  wire width 4 input 0 \\i
end

module \\top.core.b
  wire width 2 inout 0 \\p
end
"""


def _tiny_plan(board=MEGA):
    from test_board_top import _tiny_family
    model = _tiny_family()
    fold = auto_fold(model, max_multipliers=8)
    return model, fold, lower(model, fold, Target(multiplier=get_board(board).multiplier, board=board))


def test_rtlil_split_keeps_every_module_and_its_attributes():
    header, modules = stagewise.split_rtlil(RTLIL)
    assert header == "# Automatically generated\n"
    assert list(modules) == ["top", "top.core", "top.core.a", "top.core.a.sub", "top.core.b"]
    assert modules["top"].startswith('attribute \\generator "Amaranth"\nattribute \\top 1\nmodule \\top\n')
    assert modules["top"].endswith("connect \\o 8'00000000\nend\n")    # a module-level connect stays inside
    assert header + "".join(modules.values()) == RTLIL.replace("end\n\n", "end\n")   # only blank lines go
    with pytest.raises(UserError, match="truncated"):
        stagewise.split_rtlil(RTLIL[:-5])


def test_partitions_and_stubs():
    _, modules = stagewise.split_rtlil(RTLIL)
    assert stagewise.partitions(modules, "top.core") == {"top.core.a": ["top.core.a", "top.core.a.sub"],
                                                       "top.core.b": ["top.core.b"]}
    stub = stagewise.blackbox_stub(modules["top.core"])
    assert stub == ("attribute \\blackbox 1\nattribute \\squeezehw_stage 1\nmodule \\top.core\n"
                    "  wire width 1 input 0 \\clk\n  wire width 8 output 1 \\q\nend\n")
    assert "inout 0" in stagewise.blackbox_stub(modules["top.core.b"])


def test_spill_to_logic_fits_a_budget_by_the_most_wasteful_memories():
    _, _, plan = _tiny_plan()
    res = get_board(MEGA).resources
    before = estimate(plan, MEGA)
    assert spill_to_logic(plan, MEGA) == ()                         # it fits already: nothing moves
    spare = res.bram - 4                                            # as if the part had 4 BSRAMs
    boxes = spill_to_logic(plan, MEGA, spare_blocks=spare)
    after = estimate(plan, MEGA, boxes)
    assert after["block_ram"] <= 4 < before["block_ram"]
    assert after["lut"] > before["lut"] and after["ff"] > before["ff"]
    # what stayed in block RAM wastes its blocks no more than what left, box by box
    moved = [m for m, n in zip(before["memories"], after["memories"]) if m["blocks"] and not n["blocks"]]
    kept = [m for m in after["memories"] if m["blocks"]]
    assert moved and all(res.in_logic(False, m["depth"], m["width"], boxes) for m in moved)
    first = min(m["width"] * m["depth"] / m["blocks"] for m in moved)
    assert all(m["width"] * m["depth"] / m["blocks"] >= first for m in kept)
    with pytest.raises(UserError, match=r"into 4 of the part's 340 block RAMs \(336 kept spare\)"
                                        r".*over 4% of the part's 138240: fold"):
        spill_to_logic(plan, MEGA, spare_blocks=spare, lut_share=before["lut"] / res.lut)   # no LUT to spare


def test_logic_memory_boxes_are_checked():
    res = get_board(MEGA).resources
    script = logic_memory_commands(res, extra=(("ram", 271, 8),))
    assert 'setattr -set ram_style "logic" t:$mem_v2 r:WR_PORTS>=1 %i r:SIZE<=271 %i r:WIDTH<=8 %i' in script
    for bad in [("fifo", 8, 8), ("ram", 0, 8), ("ram", 8), ("ram", 8, True)]:
        with pytest.raises(UserError, match="logic memory box"):
            logic_memory_commands(res, extra=(bad,))


def _tiny_board_top():
    """The tiny design's Tang Mega board top, with its memories squeezed into 4 BSRAMs (skips
    without the Gowin tools): (top, logic-memory boxes, plan)."""
    try:
        for t in ("yosys", "nextpnr-gowin", "gowin_pack"):
            find_tool(t)
    except ToolMissingError as e:
        pytest.skip(str(e))
    from squeezehw.boards.top import TangMega138KTop
    _, _, plan = _tiny_plan()
    boxes = spill_to_logic(plan, MEGA, spare_blocks=get_board(MEGA).resources.bram - 4)
    return TangMega138KTop(plan.accelerator()), boxes, plan


def test_stagewise_board_build_tiny(tmp_path):
    """The tiny design with its memories squeezed into 4 BSRAMs, built stage by stage into a Tang
    Mega bitstream: the joined netlist holds exactly the cells of its parts, nextpnr places the
    BSRAMs the stage netlists asked for, which the estimate predicted."""
    top, boxes, plan = _tiny_board_top()
    rep = stagewise.build_board_stagewise(top, board=MEGA, out_dir=tmp_path,
                                          partition="core.accel", progress=False, logic_memories=boxes)
    assert rep.bitstream and (tmp_path / "top.fs").stat().st_size > 0 and rep.fmax_mhz > 0
    parts = collections.Counter()
    for stat in [tmp_path / "glue" / "stat.json", *sorted((tmp_path / "stages").glob("*/stat.json"))]:
        parts.update({k: int(v) for k, v in json.loads(stat.read_text())["design"]["num_cells_by_type"].items()})
    joined = {k: int(v) for k, v in json.loads((tmp_path / "stat.json").read_text())["design"]
              ["num_cells_by_type"].items()}
    cells = {t for t in parts if "." not in t and not t.startswith("$")}   # not stage instances, scope info
    assert {t: joined.get(t, 0) for t in cells} == {t: parts[t] for t in cells}
    accel_bsram = estimate(plan, MEGA, boxes)["block_ram"]
    assert rep.bram == _yosys_counts(parts, "gowin")["bram"]
    assert rep.bram <= accel_bsram + 1          # + the board top's UART receive FIFO
    # the LUT positions counted before nextpnr: Yosys's LUTs and ALUs plus the unpaired flip-flops
    need = json.loads((tmp_path / "slices.json").read_text())
    assert need["positions"] == need["lut"] + need["alu"] + need["ff_unpaired"] <= get_board(MEGA).resources.lut
    assert need["ff"] == _yosys_counts(joined, "gowin")["ff"] and need["ff_unpaired"] > 0


def test_stagewise_stops_before_nextpnr_when_the_lut_positions_overflow(tmp_path, monkeypatch):
    """Over the part's LUT positions, the build says so after the join instead of an hour in
    nextpnr's placer (the moonshot's first two attempts)."""
    top, boxes, _ = _tiny_board_top()
    over = {"lut": 100_000, "alu": 13_000, "ff": 52_000, "ff_paired": 10_000, "ff_unpaired": 42_000,
            "positions": 155_000, "unpaired_by_driver": {"DFFRE": 27_000}}
    monkeypatch.setattr(stagewise, "slice_positions", lambda netlist, top: over)
    with pytest.raises(UserError, match=r"needs 155000 LUT positions, the part has 138240 \(16760 over\)"):
        stagewise.build_board_stagewise(top, board=MEGA, out_dir=tmp_path,
                                        partition="core.accel", progress=False, logic_memories=boxes)
    assert not (tmp_path / "top.tim").exists()         # nextpnr never started


def test_block_ram_refusal_names_the_memories_to_build_from_logic(monkeypatch):
    """`squeezehw build/fold --board` refuses a design over the board's block RAM; when memories in
    logic would close the gap, the error gives the --logic-memory options that do it."""
    from dataclasses import replace

    from squeezehw.boards import registry
    from squeezehw.pipeline import check_bram
    model, fold, _ = _tiny_plan()
    b = get_board(MEGA)
    small = replace(b, resources=replace(b.resources, bram=4))     # as if the part had 4 BSRAMs
    monkeypatch.setitem(registry.BOARDS, MEGA, small)

    class Config:
        max_bram = None

        def board_entry(self):
            return small

        def target(self):
            return Target(multiplier="gw5a", board=MEGA)

    with pytest.raises(UserError, match=r"more than the tang-mega-138k-pro's block RAM \(4\).*"
                                        r"from logic \([0-4] blocks.*--logic-memory (ram|rom):\d+:\d+"):
        check_bram(Config(), model, fold)
