# amaranth: UnusedElaboratable=no
# (several tests hand synthesize() a design that it rightly rejects before elaborating it)
"""Synthesis flow tests (Yosys + nextpnr via YoWASP); skipped cleanly where the tools are missing.

The designs are small components written here, so the flow is tested independently of the
accelerator's blocks: an int8 MAC beside a Memory ROM (DSP and block RAM inference), and a chain of
int8 MACs that needs one more multiplier than the UP5K has.
"""
import json
from pathlib import Path

import pytest
from amaranth import Module, Signal, signed
from amaranth.lib import io, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from squeezehw.boards.registry import BOARDS, get_board

from squeezehw.errors import ToolMissingError, UserError
from squeezehw.toolchain.synth import build_board, find_tool, synthesize


def _require(*tools):
    try:
        for t in tools:
            find_tool(t)
    except ToolMissingError as e:
        pytest.skip(str(e))


class MacRom(wiring.Component):
    """Registered int8 x int8 MAC (24-bit accumulator) and a 256 x 16 ROM with a synchronous read.

    Narrow outputs so every port fits the 39 pins of an iCE40 UP5K in SG48.
    """
    a: In(signed(8))
    b: In(signed(8))
    clr: In(1)
    addr: In(8)
    acc: Out(6)
    rom: Out(4)

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = mem = Memory(shape=16, depth=256,
                                        init=[(i * 40503 + 12345) & 0xFFFF for i in range(256)])
        rp = mem.read_port()  # synchronous (domain "sync"): maps to block RAM
        m.d.comb += [rp.addr.eq(self.addr),
                     self.rom.eq(rp.data[0:4] ^ rp.data[4:8] ^ rp.data[8:12] ^ rp.data[12:16])]
        ra, rb = Signal(signed(8)), Signal(signed(8))
        acc = Signal(signed(24))
        m.d.sync += [ra.eq(self.a), rb.eq(self.b)]
        with m.If(self.clr):
            m.d.sync += acc.eq(0)
        with m.Else():
            m.d.sync += acc.eq(acc + ra * rb)
        m.d.comb += self.acc.eq(acc[18:24])
        return m


class MacChain(wiring.Component):
    """``n`` int8 MACs fed by two shift chains (activations, weights); output: the sum's top byte."""

    def __init__(self, *, n: int):
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, not {n!r}")
        self.n = n
        super().__init__({"a": In(signed(8)), "w": In(signed(8)), "en": In(1), "y": Out(8)})

    def elaborate(self, platform):
        m = Module()
        xs = [Signal(signed(8), name=f"x{i}") for i in range(self.n)]
        ws = [Signal(signed(8), name=f"w{i}") for i in range(self.n)]
        accs = [Signal(signed(24), name=f"acc{i}") for i in range(self.n)]
        with m.If(self.en):
            m.d.sync += [xs[0].eq(self.a), ws[0].eq(self.w)]
            m.d.sync += [xs[i].eq(xs[i - 1]) for i in range(1, self.n)]
            m.d.sync += [ws[i].eq(ws[i - 1]) for i in range(1, self.n)]
        m.d.sync += [acc.eq(acc + x * w) for acc, x, w in zip(accs, xs, ws)]
        total = Signal(signed(28))
        m.d.sync += total.eq(sum(accs))
        m.d.comb += self.y.eq(total[20:28])
        return m


REQUIRED_FIELDS = {"board", "device", "lut", "ff", "dsp", "bram", "fmax_mhz", "target_mhz", "timing_met",
                   "bitstream", "logs", "tools", "seconds", "schema"}


@pytest.fixture(scope="module")
def ecp5_report(tmp_path_factory):
    _require("yosys", "nextpnr-ecp5")
    out = tmp_path_factory.mktemp("ecp5")
    return synthesize(MacRom(), board="ecp5-85f", out_dir=out, top="macrom", target_mhz=50,
                      progress=False), out


@pytest.fixture(scope="module")
def ice40_report(tmp_path_factory):
    _require("yosys", "nextpnr-ice40", "icepack")
    out = tmp_path_factory.mktemp("ice40")
    return synthesize(MacRom(), board="up5k", out_dir=out, top="macrom", target_mhz=12,
                      bitstream=True, progress=False), out


def test_ecp5_infers_dsp_and_block_ram(ecp5_report):
    r, _ = ecp5_report
    assert r.utilization["MULT18X18D"]["used"] >= 1 and r.dsp >= 1
    assert r.utilization["DP16KD"]["used"] >= 1 and r.bram >= 1
    assert r.io_mode == "out-of-context" and r.io is None


def test_ecp5_report_json_is_complete_and_sane(ecp5_report):
    r, out = ecp5_report
    data = json.loads((out / "report.json").read_text())
    assert REQUIRED_FIELDS <= data.keys()
    assert data == json.loads(json.dumps(r.to_json()))
    assert data["device"] == "LFE5U-85F"
    assert 0 < data["lut"] < 1000 and 0 < data["ff"] < 1000
    assert data["available"]["dsp"] == data["utilization"]["MULT18X18D"]["available"] == 156
    assert 20 < data["fmax_mhz"] < 1000 and data["fmax_by_clock"].keys() == {"clk"}
    assert data["timing_met"] == (data["fmax_mhz"] >= 50)
    assert data["bitstream"] is None
    assert data["tools"]["yosys"].startswith("Yosys") and "nextpnr" in data["tools"]["nextpnr"]
    for log in data["logs"].values():
        assert Path(log).is_file()
    assert not list(out.glob(".report.json.tmp*"))


def test_ice40_infers_dsp_ebr_and_makes_bitstream(ice40_report):
    r, out = ice40_report
    assert r.utilization["ICESTORM_DSP"]["used"] >= 1 and r.dsp >= 1
    assert r.utilization["ICESTORM_RAM"]["used"] >= 1 and r.bram >= 1
    assert r.io_mode == "pins" and 0 < r.io <= 39
    assert r.fmax_mhz > 12 and r.timing_met is True
    assert r.bitstream and (out / "macrom.bin").stat().st_size > 1000
    assert json.loads((out / "report.json").read_text())["bitstream"] == r.bitstream


def test_too_big_for_up5k_names_the_resource(tmp_path):
    _require("yosys", "nextpnr-ice40")
    with pytest.raises(UserError, match=r"DSP multipliers: needs 9 SB_MAC16, the part has 8 \(1 over"):
        synthesize(MacChain(n=9), board="up5k", out_dir=tmp_path, top="chain9", progress=False)
    assert not (tmp_path / "report.json").exists()


def test_nextpnr_failure_is_translated(tmp_path):
    # 43 port bits on a 39-pin package, bypassing the pre-check by asking nextpnr directly.
    from squeezehw.toolchain import synth
    (tmp_path / "nextpnr.log").write_text(
        "Info: Device utilisation:\nInfo: \t         ICESTORM_LC:      23/   5280     0%\n"
        "Info: \t               SB_IO:      43/     39   110%\n"
        "ERROR: Unable to find a placement location for cell 'acc[0]$sb_io'\n")
    err = synth._translate_pnr_failure(synth._ToolFailed("nextpnr-ice40", 1, tmp_path / "nextpnr.log"),
                                       get_board("up5k"), top="t")
    assert "I/O pins (SB_IO): needs 43, the part has 39 (4 over)" in str(err)


def test_missing_tool_raises_tool_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("NEXTPNR_ECP5", str(tmp_path / "no-such-nextpnr"))
    (tmp_path / "report.json").write_text("{}")  # stale report from an "earlier run"
    with pytest.raises(ToolMissingError, match="NEXTPNR_ECP5"):
        synthesize(MacRom(), board="ecp5-85f", out_dir=tmp_path, progress=False)
    assert not (tmp_path / "report.json").exists()


def test_argument_errors(tmp_path):
    with pytest.raises(UserError, match="unknown board 'kintex'.*ulx3s-85f"):
        get_board("kintex")
    with pytest.raises(UserError, match="top module name"):
        (tmp_path / "x.v").write_text("module x(); endmodule\n")
        synthesize(tmp_path / "x.v", board="up5k", out_dir=tmp_path / "o", progress=False)
    with pytest.raises(UserError, match="does not exist"):
        synthesize(tmp_path / "nope.v", top="nope", board="up5k", out_dir=tmp_path / "o", progress=False)
    with pytest.raises(UserError, match="target_mhz"):
        synthesize(MacRom(), board="up5k", out_dir=tmp_path / "o", target_mhz=-5, progress=False)
    with pytest.raises(UserError, match="no bitstream"):
        synthesize(MacRom(), board="xczu9eg", out_dir=tmp_path / "o", bitstream=True, progress=False)


def test_registry_is_consistent():
    for b in BOARDS.values():
        assert b.family in ("ecp5", "ice40", "xilinx", "gowin")
        assert b.pnr == (b.family != "xilinx")
        assert b.default_mhz > 0
    assert get_board("ULX3S").name == "ulx3s-85f"
    assert get_board("icebreaker").platform_class().__name__ == "ICEBreakerPlatform"


def test_verilog_file_on_xilinx_synthesis_only(tmp_path):
    _require("yosys")
    from amaranth.back import verilog
    src = tmp_path / "chain.v"
    src.write_text(verilog.convert(MacChain(n=2), name="chain2", emit_src=False))
    r = synthesize(src, top="chain2", board="xczu9eg", out_dir=tmp_path / "out", progress=False)
    assert r.flow == "synthesis-only" and r.source == "yosys"
    assert r.dsp == 2 and r.lut > 0 and r.ff > 0
    assert r.fmax_mhz is None and r.timing_met is None


class Blinky(wiring.Component):
    """Board top for build_board: the LED blinks from the board's default clock."""

    def __init__(self):
        super().__init__({})

    def elaborate(self, platform):
        m = Module()
        m.submodules.led = led = io.Buffer("o", platform.request("led", 0, dir="-"))
        count = Signal(24)
        m.d.sync += count.eq(count + 1)
        m.d.comb += led.o.eq(count[-1])
        return m


def test_build_board_icebreaker(tmp_path):
    _require("yosys", "nextpnr-ice40", "icepack")
    r = build_board(Blinky(), board="icebreaker", out_dir=tmp_path, progress=False)
    assert r.flow == "board" and r.bitstream.endswith("top.bin")
    assert (tmp_path / "top.bin").exists() and (tmp_path / "report.json").exists()
    assert r.lut > 0 and r.ff >= 24
    assert r.fmax_mhz > 12 and r.target_mhz == 12 and r.timing_met


def test_cli_synth_on_a_build_folder(tmp_path, capsys):
    _require("yosys", "nextpnr-ice40")
    from amaranth.back import verilog

    from squeezehw.cli import main
    build = tmp_path / "build"
    build.mkdir()
    (build / "macrom.v").write_text(verilog.convert(MacRom(), name="macrom", emit_src=False))
    (build / "design.json").write_text(json.dumps({"top": "macrom", "verilog": "macrom.v"}))
    assert main(["synth", str(build), "--board", "up5k", "--json", "--no-progress"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["top"] == "macrom" and data["board"] == "up5k" and data["dsp"] >= 1
    assert (build / "synth-up5k" / "report.json").exists()
    # A Verilog file without --top is a user error (status 2), not a traceback.
    assert main(["synth", str(build / "macrom.v"), "--board", "up5k"]) == 2
    assert "--top" in capsys.readouterr().err
    assert main(["synth", "--list-boards"]) == 0
    assert "xczu9eg" in capsys.readouterr().out
    assert main(["synth", str(build), "--board", "up5k", "--logic-memory", "ram:0:8"]) == 2
    assert "KIND:DEPTH:WIDTH" in capsys.readouterr().err


def test_cli_logic_memory_parses():
    from squeezehw.commands.synth import parse_logic_memory
    assert parse_logic_memory("ram:271:8") == ("ram", 271, 8)
    for bad in ("ram:271", "fifo:8:8", "rom:-1:8", "rom:8:x"):
        with pytest.raises(UserError, match="e.g. ram:271:8"):
            parse_logic_memory(bad)


def test_board_synth_opts_from_registry(monkeypatch):
    """build_board hands the registry's synth_command options to the amaranth-boards platform
    (iCE40 multipliers reach SB_MAC16 only with `synth_ice40 -dsp`)."""
    from squeezehw.toolchain.synth import board_synth_opts
    monkeypatch.delenv("AMARANTH_synth_opts", raising=False)
    assert board_synth_opts("icebreaker") == "-dsp"
    assert board_synth_opts("ulx3s-85f") == "-abc9"
    monkeypatch.setenv("AMARANTH_synth_opts", "-dsp -abc2")
    assert board_synth_opts("icebreaker") == "-dsp -abc2"


# --- Gowin ---------------------------------------------------------------------------------------

def test_upstream_gowin_platform_still_needs_the_fixes():
    """boards/gowin.py works around three faults of Amaranth 0.5.10 / amaranth-boards; this fails
    the day upstream changes, so the workaround can be dropped (or adapted)."""
    from amaranth_boards.tang_mega_138k_pro_dock import TangMega138kProDockPlatform
    from amaranth_boards.tang_primer_20k import TangPrimer20kDockPlatform
    # 1. the GW5A part name is rejected
    with pytest.raises(ValueError, match="Supplied part name is invalid"):
        TangMega138kProDockPlatform()
    # 2. the build calls nextpnr-gowin with --family/--cst, which nextpnr-himbaechel rejects
    plan = TangPrimer20kDockPlatform().prepare(Blinky(), "top")
    script = plan.files["build_top.sh"]
    assert "NEXTPNR_GOWIN" in script and "--family GW2A-18C" in script and "--cst top.cst" in script
    # 3. the board file names a device database that Apycula and nextpnr do not have
    assert TangMega138kProDockPlatform.family == "GW5AST-138B"
    apycula = pytest.importorskip("apycula")
    dbs = {p.name.split(".")[0] for p in Path(apycula.__file__).parent.glob("*.msgpack.xz")}
    assert "GW5AST-138B" not in dbs and "GW5AST-138C" in dbs


@pytest.mark.parametrize("board", ["tang-mega-138k-pro", "tang-primer-20k"])
def test_gowin_platforms_build_script(board):
    """Our platforms (boards/gowin.py) parse the part and call nextpnr-himbaechel and gowin_pack
    with the right device database; the registry's synth options reach Yosys (build_board)."""
    from squeezehw.toolchain.synth import board_synth_opts
    b = get_board(board)
    platform = b.platform_class()()
    plan = platform.prepare(Blinky(), "top", synth_opts=board_synth_opts(b))
    script = plan.files["build_top.sh"]
    assert f"--device {b.device}" in script and f"--vopt family={b.chipdb}" in script
    assert "--vopt cst=top.cst" in script and "--family" not in script
    assert f'"$GOWIN_PACK" -d {b.chipdb}' in script and "NEXTPNR_HIMBAECHEL" in script
    assert f"synth_gowin {b.synth_command.split(maxsplit=1)[1]} -top top" in plan.files["top.ys"]
    assert b.synth_command.split()[1:3] == ["-family", "gw5a" if board == "tang-mega-138k-pro" else "gw2a"]
    # the GW5A has no LUT RAM (only ROM16) although nextpnr's database offers RAM16SDP4
    assert ("-nolutram" in b.synth_command) == (board == "tang-mega-138k-pro")


class MulChain(wiring.Component):
    """``n`` RegisteredMultipliers (int8 x uint8, as the MVU's MACs) summed into one byte."""

    def __init__(self, *, n: int, primitive: str = "generic"):
        self.n, self.primitive = n, primitive
        super().__init__({"a": In(signed(8)), "w": In(8), "y": Out(8)})

    def elaborate(self, platform):
        from squeezehw.hw.multiplier import RegisteredMultiplier
        m = Module()
        total = 0
        prev_a, prev_w = self.a, self.w
        for i in range(self.n):
            mul = RegisteredMultiplier(signed(8), 8, name=f"mul{i}", primitive=self.primitive)
            m.submodules[f"mul{i}"] = mul
            ra, rw = Signal(signed(8), name=f"ra{i}"), Signal(8, name=f"rw{i}")
            m.d.sync += [ra.eq(prev_a), rw.eq(prev_w)]
            m.d.comb += [mul.a.eq(ra), mul.b.eq(rw), mul.ce.eq(1)]
            prev_a, prev_w = ra, rw
            total = total + mul.p
        acc = Signal(signed(20))
        m.d.sync += acc.eq(total)
        m.d.comb += self.y.eq(acc[12:20])
        return m


@pytest.mark.parametrize("family,cell,expected", [("gw5a", "MULT12X12", 3), ("generic", "MULT12X12", 0),
                                                  ("gw2a", "MULT9X9", 3)])
def test_gowin_netlist_holds_the_dsp_cells(tmp_path, family, cell, expected):
    """Yosys only (a few seconds): each RegisteredMultiplier is one DSP cell under the Gowin forms;
    with the generic form synth_gowin -family gw5a maps none (the reason the primitive exists)."""
    _require("yosys")
    board = "tang-primer-20k" if family == "gw2a" else "tang-mega-138k-pro"
    r = synthesize(MulChain(n=3, primitive=family), board=board, out_dir=tmp_path, top="mulchain",
                   place_and_route=False, progress=False)
    assert r.flow == "synthesis-only" and r.fmax_mhz is None
    assert r.utilization.get(cell, {"used": 0})["used"] == expected and r.dsp == expected
    if family != "generic":
        assert r.lut < 200      # no multiplier left in the fabric


class SmallMemories(wiring.Component):
    """A 256 x 30 parameter ROM and a 15 x 8 RAM (an MVU's output FIFO storage), and a 512 x 30 ROM."""

    def __init__(self):
        super().__init__({"a": In(9), "wa": In(4), "wd": In(8), "we": In(1), "y": Out(30), "z": Out(30),
                          "q": Out(8)})

    def elaborate(self, platform):
        m = Module()
        for name, depth, out in (("params", 256, self.y), ("deep", 512, self.z)):
            rom = m.submodules[name] = Memory(shape=30, depth=depth, init=[(i * 2654435761) % (1 << 30)
                                                                          for i in range(depth)])
            rp = rom.read_port()
            m.d.comb += [rp.addr.eq(self.a), out.eq(rp.data)]
        ram = m.submodules.fifo = Memory(shape=8, depth=15, init=[])
        wp, rp = ram.write_port(), ram.read_port()
        m.d.comb += [wp.addr.eq(self.wa), wp.data.eq(self.wd), wp.en.eq(self.we), rp.addr.eq(self.a[:4]),
                     self.q.eq(rp.data)]
        return m


def test_gowin_logic_memories_stay_out_of_block_ram(tmp_path):
    """Yosys only: on the GW5AST-138C the memories inside Resources.logic_memories (the 256-deep ROM,
    the 15-deep RAM) become logic, the 512-deep ROM takes a BSRAM, as the estimate counts them;
    without the script Yosys would put the 256 x 30 ROM in a BSRAM as well."""
    _require("yosys")
    from squeezehw.plan.resources import MemoryUse
    res = get_board("tang-mega-138k-pro").resources
    assert [res.in_logic(m.rom, m.depth, m.width) for m in
            (MemoryUse("p", 30, 256, rom=True), MemoryUse("f", 8, 15), MemoryUse("d", 30, 512, rom=True))] \
        == [True, True, False]
    r = synthesize(SmallMemories(), board="tang-mega-138k-pro", out_dir=tmp_path, top="mems",
                   place_and_route=False, progress=False)
    assert r.bram == 1
    assert r.ff >= 15 * 8           # the RAM's bits in flip-flops
    # the same per module (flatten=False, for designs too large for YoWASP's 4 GB when flat)
    r = synthesize(SmallMemories(), board="tang-mega-138k-pro", out_dir=tmp_path / "nf", top="mems",
                   place_and_route=False, progress=False, flatten=False)
    assert "-noflatten" in (tmp_path / "nf" / "synth.ys").read_text() and r.bram == 1
    with pytest.raises(UserError, match="synthesis-only"):
        synthesize(SmallMemories(), board="tang-mega-138k-pro", out_dir=tmp_path / "x", top="mems",
                   progress=False, flatten=False)
    # the build's own box (spill_to_logic's, or --logic-memory rom:512:30) takes the 512-deep ROM too
    assert res.in_logic(True, 512, 30, (("rom", 512, 30),))
    r = synthesize(SmallMemories(), board="tang-mega-138k-pro", out_dir=tmp_path / "spill", top="mems",
                   place_and_route=False, progress=False, logic_memories=(("rom", 512, 30),))
    assert r.bram == 0 and 'r:SIZE<=512 %i r:WIDTH<=30' in (tmp_path / "spill" / "synth.ys").read_text()


def test_gowin_fit_errors_name_the_resource(tmp_path):
    from squeezehw.toolchain import synth
    b = get_board("tang-mega-138k-pro")
    with pytest.raises(UserError, match=r"DSP multipliers: needs 600 MULT12X12, the part has 596 \(4 over"):
        synth._check_fit({"lut": 10, "ff": 10, "dsp": 600, "bram": 1, "spram": 0}, b, top="t", what="after synthesis")
    with pytest.raises(UserError, match=r"LUT positions \(LUTs, ALUs and a pass-through LUT per flip-flop .*"
                                         r"needs 140000 LUT4, the part has 138240 \(1760 over"):
        synth._check_fit({"lut": 140_000, "ff": 10, "dsp": 1, "bram": 1, "spram": 0}, b, top="t", what="after synthesis")
    (tmp_path / "nextpnr.log").write_text(
        "Info: Device utilisation:\nInfo: \t                LUT4:   9000/ 138240     6%\n"
        "Info: \t               BSRAM:    400/    340   117%\nERROR: Unable to place cell 'x'\n")
    err = synth._translate_pnr_failure(synth._ToolFailed("nextpnr-gowin", 1, tmp_path / "nextpnr.log"), b, top="t")
    assert "block RAMs (BSRAM): needs 400, the part has 340 (60 over)" in str(err)


def test_gowin_nextpnr_report_is_parsed(tmp_path):
    """The classes of nextpnr-himbaechel-gowin's report: ALU cells take LUT positions, a MULTALU27X18
    counts two MULT12X12."""
    from squeezehw.toolchain import synth
    util = {"LUT4": {"available": 138240, "used": 100}, "ALU": {"available": 103680, "used": 20},
            "DFF": {"available": 138240, "used": 50}, "MULT12X12": {"available": 596, "used": 3},
            "MULTALU27X18": {"available": 298, "used": 1}, "BSRAM": {"available": 340, "used": 4},
            "IOB": {"available": 324, "used": 9}}
    (tmp_path / "r.json").write_text(json.dumps({"utilization": util, "fmax": {
        "cd_sync.clk": {"achieved": 123.456, "constraint": 100.0}}}))
    _, used, fmax, constraint = synth._parse_nextpnr_report(tmp_path / "r.json", "gowin")
    assert used == {"lut": 120, "ff": 50, "dsp": 5, "bram": 4, "io": 9}
    assert fmax == {"cd_sync.clk": 123.46} and constraint == {"cd_sync.clk": 100.0}


def test_cli_refuses_a_build_for_another_dsp_family(tmp_path, capsys):
    """A `squeezehw build --dsp gw5a` folder holds MULT12X12 instances: synthesising it for ECP5 or
    the GW2A is refused by name, before any tool runs."""
    from squeezehw.cli import main
    build = tmp_path / "build"
    build.mkdir()
    (build / "x.v").write_text("module x(); endmodule\n")
    (build / "design.json").write_text(json.dumps({"top": "x", "verilog": "x.v", "dsp": "gw5a"}))
    assert main(["synth", str(build), "--board", "ulx3s-85f", "--no-progress"]) == 2
    assert "rebuild it with --dsp ecp5" in capsys.readouterr().err
    assert main(["synth", str(build), "--board", "tang-primer-20k", "--no-progress"]) == 2
    assert "rebuild it with --dsp gw2a" in capsys.readouterr().err
