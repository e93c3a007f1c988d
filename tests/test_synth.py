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

from squeezehw.boards import BOARDS, get_board
from squeezehw.errors import ToolMissingError, UserError
from squeezehw.synth import build_board, find_tool, synthesize


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
    from squeezehw import synth
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
        assert b.family in ("ecp5", "ice40", "xilinx")
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


def test_board_synth_opts_from_registry(monkeypatch):
    """build_board hands the registry's synth_command options to the amaranth-boards platform
    (iCE40 multipliers reach SB_MAC16 only with `synth_ice40 -dsp`)."""
    from squeezehw.synth import board_synth_opts
    monkeypatch.delenv("AMARANTH_synth_opts", raising=False)
    assert board_synth_opts("icebreaker") == "-dsp"
    assert board_synth_opts("ulx3s-85f") == "-abc9"
    monkeypatch.setenv("AMARANTH_synth_opts", "-dsp -abc2")
    assert board_synth_opts("icebreaker") == "-dsp -abc2"
