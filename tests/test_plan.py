"""The build plan (squeezehw/plan/lowering.py) against the hardware built from it, the budgets that read it,
the board registry, and the build config that reproduces a build."""
import json
import re
from collections import Counter

import numpy as np
import pytest
from amaranth.back import verilog
from squeezehw.boards.registry import BOARDS, get_board

from squeezehw.cli import main
from squeezehw.plan.config import BuildConfig
from squeezehw.plan.folding import auto_fold, default_folding
from squeezehw.plan.lowering import MULTIPLIER_PRIMITIVES, WINDOW_EXTRA_PIXELS, Target, lower
from squeezehw.plan.resources import design_inventory, estimate
from squeezehw.quant.random_model import random_model

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


def small_model(seed=11):
    return random_model(np.random.default_rng(seed), size=10, classes=6)     # simple + complex bypass


def hw_blocks(plan):
    """Every squeezehw block of the elaborated design, by class name."""
    _, blocks = design_inventory(plan.accelerator())
    out = {}
    for b in blocks:
        out.setdefault(type(b).__name__, []).append(b)
    return out


@pytest.mark.parametrize("requant", ["parallel", "serial"])
def test_records_match_the_blocks_built_from_them(requant):
    model = small_model()
    plan = lower(model, default_folding(model), Target(requant=requant))
    blocks = hw_blocks(plan)
    mvus = {m.name: m for m in blocks["MVU"]}
    convs = {c.name: c for c in plan.compute_stages() if c.kind == "conv"}
    assert set(mvus) == set(convs)
    for name, c in convs.items():
        m = mvus[name]
        assert (m.simd, m.pe, m.acc_bits, m.w_bits, m.requant) == (c.simd, c.pe, c.acc_bits, c.w_bits, requant), name
        assert (m.weight_depth, m.weight_width, m.fifo_depth) == (c.weight_depth, c.weight_width, c.out_fifo_depth)
    # every RegisteredMultiplier the design instantiates (MAC, requantisation, bypass add), with its
    # operand shapes, is the plan's (the plan also counts the windows' constant address multiplies)
    mults = blocks["RegisteredMultiplier"]
    registered = [m for m in plan.multipliers() if m.role != "index"]
    assert len(mults) == sum(m.count for m in registered)
    shapes = Counter((m.a_shape.width, m.a_shape.signed, m.b_shape.width, m.b_shape.signed) for m in mults)
    want = Counter()
    for m in registered:
        want[(m.a_bits, m.a_signed, m.b_bits, m.b_signed)] += m.count
    assert shapes == want
    assert (plan.requant_multipliers() == 0) == (requant == "serial")
    # FIFO depths: the sizing pass's, as built
    fifos = {f.width: f for f in blocks["StreamFIFO"]}
    assert fifos
    assert {w.input_skew_pixels for w in blocks["SlidingWindow"]} == {WINDOW_EXTRA_PIXELS}
    for name, f in plan.stage_fifos().items():
        assert any(b.depth == f["depth"] and b.width == f["width"] for b in blocks["StreamFIFO"]), name


def test_ecp5_dsp_count_is_the_netlist_count():
    """With ECP5 primitives every multiplier the plan counts is one MULT18X18D instance in the
    Verilog (plus one per window whose constant address multiply is not a shift), so the estimate's
    DSP total is what Yosys and nextpnr place."""
    model = small_model()
    plan = lower(model, default_folding(model), Target(multiplier="ecp5"))
    text = verilog.convert(plan.accelerator(), name="top", emit_src=False)
    index = plan.count("index")
    assert text.count("MULT18X18D #(") + index == plan.dsp("ulx3s-85f") == estimate(plan, "ulx3s-85f")["dsp"]
    assert len(re.findall(r"\* \$signed\(\d+'h[0-9a-f]+\)|\* \d+'h[0-9a-f]+;", text)) >= index
    serial = lower(model, default_folding(model), Target(multiplier="ecp5", requant="serial"))
    text = verilog.convert(serial.accelerator(), name="top", emit_src=False)
    est = estimate(serial, "ulx3s-85f")
    assert est["requant_multipliers"] == 0 and text.count("MULT18X18D #(") + index == est["dsp"] < plan.dsp()


def test_pool_fifo_is_a_margin_only():
    """The pool hands out finished rows from its banks (hw/maxpool.py), so the plan's FIFO after it
    holds two beats, not an output row."""
    from squeezehw.plan.fifo_sizing import POOL_FIFO_MARGIN, pool_fifo_depth
    assert pool_fifo_depth() == POOL_FIFO_MARGIN == 2


@pytest.mark.parametrize("which", ["default", "random"])
def test_board_budget_counts_every_multiplier(which):
    """`--board ulx3s-85f` auto-folding: every multiplier (MAC, requantisation, bypass add) within
    the part's 156 DSPs; a MAC-only budget of 156 would exceed it."""
    from squeezehw.pipeline import default_int_model, folding_for_config
    model = default_int_model(progress=False) if which == "default" else random_model(
        np.random.default_rng(3), in_ch=3, size=24, conv1=(32, 3, 2, 0), pool_after=(0,), classes=8,
        fires=((8, 32, 32, "simple"), (16, 64, 64, "complex"), (16, 64, 64, "simple")), name="random_wide")
    cfg = BuildConfig(board="ulx3s-85f")
    plan = lower(model, folding_for_config(cfg, model), cfg.target())
    assert plan.target.multiplier == "ecp5"
    assert plan.dsp("ulx3s-85f") <= get_board("ulx3s-85f").resources.dsp == 156
    mac_only = lower(model, auto_fold(model, max_multipliers=156), cfg.target())
    assert mac_only.dsp("ulx3s-85f") > plan.dsp("ulx3s-85f")


def test_board_registry_is_the_one_table():
    from squeezehw.hw.multiplier import DSP_FAMILIES
    from squeezehw.plan import memory
    assert MULTIPLIER_PRIMITIVES == DSP_FAMILIES
    for b in BOARDS.values():
        assert b.multiplier in DSP_FAMILIES and b.resources.bram_modes, b.name
        assert memory.board_budget(b.name) == b.byte_budget == memory.BOARDS[b.name]
        for alias in b.aliases:
            assert memory.board_budget(alias) == b.byte_budget
    assert get_board("ulx3s").board_top == "squeezehw.boards.top:ULX3STop"


def test_config_rebuild_is_byte_identical(tmp_path, capsys):
    """A build records its config (folding inline); `build --config` of that file gives the same bytes."""
    model = small_model()
    path = tmp_path / "m.npz"
    model.save(path)
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["build", str(path), "--fold", "auto", "--max-dsp", "40", "--requant", "serial",
                 "--dsp", "ecp5", "-o", str(a)]) == 0
    cfg = json.loads((a / "config.json").read_text())
    design = json.loads((a / "design.json").read_text())
    assert design["config"] == cfg and cfg["requant"] == "serial" and cfg["multiplier"] == "ecp5"
    assert cfg["fold"]["layers"] == json.loads((a / "folding.json").read_text())["layers"]
    assert design["estimated_resources"]["ecp5"]["requant_multipliers"] == 0
    assert main(["build", "--config", str(a / "config.json"), "-o", str(b)]) == 0
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert [f for f in files if (a / f).read_bytes() != (b / f).read_bytes()] == []
    capsys.readouterr()
    assert main(["build", "--config", str(a / "config.json"), "--board", "icebreaker", "-o", str(b)]) == 2
    assert "--board" in capsys.readouterr().err


def test_bitstream_and_config_errors_are_one_line(tmp_path, capsys):
    model = small_model()
    path = tmp_path / "m.npz"
    model.save(path)
    out = tmp_path / "out"
    assert main(["build", str(path), "-o", str(out)]) == 0
    capsys.readouterr()
    assert main(["bitstream", str(out)]) == 2                   # built without --board
    assert "--board" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "squeezehw-build-config", "version": 1, "modle": "x"}')
    assert main(["build", "--config", str(bad)]) == 2
    assert "unknown keys ['modle']" in capsys.readouterr().err
    assert main(["build", "--config", str(tmp_path / "missing.json")]) == 2
    assert "no such build config" in capsys.readouterr().err


def test_memories_without_lut_ram_take_block_ram():
    # the iCE40 has no LUT RAM: Yosys put every RAM deeper than 4 words in an SB_RAM40_4K (the
    # iCEBreaker build: 13 blocks where the estimate said 2 when it assumed LUT RAM); ROMs of at
    # most 32 words stay logic everywhere
    from squeezehw.plan.resources import MemoryUse, estimate
    fifo, tiny, rom = MemoryUse("f", 8, 22), MemoryUse("t", 14, 4), MemoryUse("w", 8, 16, rom=True)
    assert fifo.distributed(lut_ram=True) and not fifo.distributed(lut_ram=False)
    assert tiny.distributed(lut_ram=False) and rom.distributed(lut_ram=False)
    from squeezehw.plan.folding import default_folding
    from squeezehw.plan.lowering import lower
    from squeezehw.quant.random_model import random_model
    model = random_model(np.random.default_rng(3), size=8, classes=4)
    plan = lower(model, default_folding(model))
    mems, _ = plan.inventory
    ice, ecp = estimate(plan, "up5k"), estimate(plan, "ecp5-85f")
    deep_rams = [m for m in mems if not m.rom and m.depth > 4]
    assert deep_rams and ice["block_ram"] >= len(deep_rams)
    assert ice["distributed_ram_bits"] < ecp["distributed_ram_bits"]


def test_explicit_default_folding_is_kept_with_a_board():
    # `--board` alone auto-folds for the part's DSPs; `--fold default` says the default folding
    # (it was silently auto-folded: 160 MACs instead of 45 for the default model on the Tang Mega)
    from squeezehw.errors import UserError
    from squeezehw.pipeline import default_int_model, folding_for_config
    model = default_int_model(progress=False)
    default = default_folding(model)
    assert folding_for_config(BuildConfig(board="tang-mega-138k-pro", fold="default"), model) == default
    assert folding_for_config(BuildConfig(board="tang-mega-138k-pro"), model) != default
    with pytest.raises(UserError, match="--fold auto"):
        folding_for_config(BuildConfig(fold="default", max_multipliers=9), model)


def test_decoder_codebooks_are_not_booked_as_block_ram():
    # WeightDecoder.estimate counts its codebook ROMs as LUTs (where Yosys kept them); the memory
    # count must not book them again as block RAM (DC v1.0 at 493 multipliers: 198 blocks too many)
    from squeezehw.plan.resources import estimate
    from squeezehw.quant.sparse_weights import encode_model
    model = random_model(np.random.default_rng(11), size=10, classes=6)
    fold = default_folding(model)
    plan = lower(model, fold, weight_codes=encode_model(model, fold))
    mems, _ = plan.inventory
    books = [m for m in mems if m.path.split(".")[-1].startswith("codebook")]
    assert books and all(m.distributed() and m.distributed(lut_ram=False) for m in books)
    rows = {r["path"]: r["blocks"] for r in estimate(plan, "ecp5-85f")["memories"]}
    assert all(rows[m.path] == 0 for m in books)


def test_weight_banks_follow_the_boards_block_ram():
    """A dense weight memory deeper than one block of the build's board is banked (hw/mvu.py
    ``weight_bank_depth``) without taking more blocks; memories that fit one block depth, every
    one of the default model's, stay one memory; the plan's FIFO depth is the banked unit's."""
    from squeezehw.pipeline import default_int_model
    from squeezehw.plan.resources import blocks_for, weight_bank_depth
    # Yosys synth_ecp5 mapped these ROMs (the largest ULX3S member's) to the same DP16KD count deep
    # (with a depth-select mux after the blocks) and banked (104 x 985, 456 x 1011, 128 x 2025: none)
    assert weight_bank_depth(8, 12800, "ulx3s-85f") == 985              # 13 banks, 6 blocks
    assert weight_bank_depth(24, 19200, "ulx3s-85f") == 1011            # 19 banks, 26 blocks
    assert weight_bank_depth(16, 16200, "ulx3s-85f") == 2025            # 8 banks, 15 blocks
    assert weight_bank_depth(64, 576, "ulx3s-85f") is None              # 18 x 1024 holds it: 4 blocks
    assert weight_bank_depth(8, 32, "ulx3s-85f") is None                # logic
    for w, d in ((8, 12800), (24, 19200), (16, 16200), (8, 4800), (40, 3000), (3, 70000)):
        bd = weight_bank_depth(w, d, "ulx3s-85f")
        assert bd is None or blocks_for(w * -(-d // bd), bd, "ulx3s-85f") <= blocks_for(w, d, "ulx3s-85f")

    model = default_int_model(progress=False)
    plan = lower(model, default_folding(model), BuildConfig(model="default", board="ulx3s-85f").target())
    assert plan.target.board == "ulx3s-85f"
    assert all(c.weight_bank_depth is None for c in plan.compute_stages() if c.kind == "conv")

    small = small_model()
    fold = default_folding(small)
    banked = lower(small, fold, Target(bank_depth=32))        # 24..96 words: some banked, some not
    convs = [c for c in banked.compute_stages() if c.kind == "conv"]
    assert any(c.weight_banks > 1 for c in convs) and any(c.weight_depth <= 32 for c in convs)
    mvus = {m.name: m for m in hw_blocks(banked)["MVU"]}
    plain = {c.name: c for c in lower(small, fold).compute_stages() if c.kind == "conv"}
    for c in convs:
        m = mvus[c.name]
        assert c.weight_bank_depth == (32 if c.weight_depth > 32 else None)
        assert (m.weight_banks, m.fifo_depth) == (c.weight_banks, c.out_fifo_depth)
        assert c.out_fifo_depth == plain[c.name].out_fifo_depth + (c.weight_banks > 1)
        assert ("weight_banks" in c.row()) == (c.weight_banks > 1)


def test_reset_tree_follows_the_board():
    # iCE40: no reset tree (each lone tree flip-flop costs a logic cell, the UP5K member is at
    # 99 % of its LCs); elsewhere, and with no board, the tree stays
    from squeezehw.pipeline import default_int_model
    model = default_int_model(progress=False)
    fold = default_folding(model)
    assert lower(model, fold, Target(board="icebreaker")).accelerator().reset_tree is False
    assert lower(model, fold, Target(board="ulx3s-85f")).accelerator().reset_tree is True
    assert lower(model, fold, Target()).accelerator().reset_tree is True


def test_timing_registers_follow_the_board():
    # the windows' and MVUs' issue-flag / address registers (the ULX3S 100 MHz work) are left out
    # on iCE40 only, for the reset tree's reason; every window and MVU of the design gets the flag
    from squeezehw.pipeline import default_int_model
    model = default_int_model(progress=False)
    fold = default_folding(model)
    for board, want in (("icebreaker", False), ("ulx3s-85f", True), (None, True)):
        target = Target(board=board)
        assert target.timing_registers is want
        blocks = hw_blocks(lower(model, fold, target))
        assert blocks["MVU"] and blocks["SlidingWindow"]
        assert {b.timing_registers for b in blocks["MVU"] + blocks["SlidingWindow"]} == {want}, board


def test_fifo_output_register_follows_the_board():
    # the block-RAM output register of every StreamFIFO (Fire FIFOs, pool output FIFO, pool banks)
    # is built except on iCE40, for the reset tree's reason
    from squeezehw.hw.fifo import StreamFIFO
    from squeezehw.hw.fire import FireEngine
    from squeezehw.hw.maxpool import MaxPool
    from squeezehw.pipeline import default_int_model
    model = default_int_model(progress=False)
    fold = default_folding(model)
    for board, want in (("icebreaker", False), ("ulx3s-85f", True), (None, True)):
        plan = lower(model, fold, Target(board=board))
        blocks = [b for s in plan.stages if s.kind in ("pool", "fire") for b in
                  ((s.block(), s.fifo_block()) if s.kind == "pool" else (s.block(),))]
        assert {type(b) for b in blocks} == {MaxPool, StreamFIFO, FireEngine}
        for b in blocks:
            flag = b.output_register if isinstance(b, StreamFIFO) else b.fifo_output_register
            assert flag is want, (board, b)
