"""The Verilator simulation flow itself (squeezehw.toolchain.verilator, sim/harness.py, sim/tb_harness.py):
the harness catches a design that emits too many beats or leaves input untaken, the fast build
style (memory images instead of inline contents, stimulus read from a file) gives the same
results as the legacy one, a waveform lands where it was asked for, and an interrupted compile
leaves no compiler running."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from squeezehw.sim.harness import SimHarness

from squeezehw.toolchain import verilator as vl

REPO = Path(__file__).resolve().parents[1]
EXTRA, STOP = 0xAA, 0x55


class Misbehaving(wiring.Component):
    """Passes bytes through, except: after a beat EXTRA it emits that beat a second time, and after
    a beat STOP it never takes input again."""
    i: In(stream.Signature(8))
    o: Out(stream.Signature(8))

    def elaborate(self, platform):
        m = Module()
        full, again, stopped = Signal(), Signal(), Signal()
        m.d.comb += [self.o.valid.eq(full), self.i.ready.eq(~stopped & (~full | (self.o.ready & ~again)))]
        with m.If(self.o.valid & self.o.ready):
            with m.If(again):
                m.d.sync += again.eq(0)
            with m.Else():
                m.d.sync += full.eq(0)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [self.o.payload.eq(self.i.payload), full.eq(1), again.eq(self.i.payload == EXTRA),
                         stopped.eq(self.i.payload == STOP)]
        return m


def _harness(style):
    return SimHarness(Misbehaving(), in_depth=16, out_depth=16, frames_max=16, in_beats_per_frame=1,
                      out_beats_per_frame=1, watchdog=256, stimulus_from_file=style.preload,
                      registered_reset=style.registered_reset)


@pytest.fixture(scope="module")
def misbehaving():
    return vl.build(_harness(vl.STYLES["fast"]), name="tb_misbehaving", progress=False, style=vl.STYLES["fast"])


def test_clean_stream_passes(misbehaving):
    res = vl.run(misbehaving, [1, 2, 3, 4], n_out=4, traffic=vl.SimTraffic.rough(3))
    assert res["outputs"] == [1, 2, 3, 4] and not res["stuck"]
    assert res["extra_outputs"] == 0 and res["unconsumed_inputs"] == 0


def test_extra_output_beat_after_the_last_frame_is_caught(misbehaving):
    from squeezehw.sim.simulate import stream_errors
    res = vl.run(misbehaving, [1, 2, 3, EXTRA], n_out=4)
    assert res["outputs"] == [1, 2, 3, EXTRA]        # the expected beats alone look right
    assert res["extra_outputs"] == 1
    assert stream_errors(res) == ["1 output beat(s) after the last expected one"]


def test_untaken_input_is_caught(misbehaving):
    from squeezehw.sim.simulate import stream_errors
    res = vl.run(misbehaving, [1, 2, STOP, 4, 5], n_out=3, traffic=vl.SimTraffic.rough(5))
    assert res["outputs"] == [1, 2, STOP] and res["unconsumed_inputs"] == 2
    assert stream_errors(res) == ["2 input beat(s) never taken by the design"]


def test_memory_images_keep_contents_and_order():
    text = ("module top(clk);\n  reg [7:0] w [2:0];\n  initial begin\n    w[0] = 8'h01;\n    w[1] = 8'hff;\n"
            "    w[2] = 8'd7;\n  end\n  reg [3:0] z [1:0];\n  initial begin\n    z[0] = 4'h0;\n"
            "    z[1] = 4'h0;\n  end\nendmodule\n")
    new, images = vl.external_memories(text, "/m")
    assert list(images.values()) == ["01\nff\n07\n"]
    assert f'initial $readmemh("/m/{next(iter(images))}", w);' in new and "w[1] =" not in new
    assert "z[squeezehw_i0] = 4'd0;" in new and "z[1] =" not in new


def test_fast_and_legacy_styles_agree(misbehaving):
    """Same design, both build styles: the same beats (the stimulus read from a file vs written
    beat by beat from Python) and the same cycle count."""
    legacy = vl.build(_harness(vl.STYLES["legacy"]), name="tb_misbehaving", progress=False,
                      style=vl.STYLES["legacy"])
    assert misbehaving.meta["stimulus_from_file"] and not legacy.meta["stimulus_from_file"]
    beats = [9, 8, 7, 6, 5, 4, 3, 2]
    a = vl.run(misbehaving, beats, n_out=8, traffic=vl.SimTraffic.rough(2))
    b = vl.run(legacy, beats, n_out=8, traffic=vl.SimTraffic.rough(2))
    assert a["outputs"] == b["outputs"] == beats and a["cycles"] == b["cycles"]
    assert a["load_seconds"] < b["load_seconds"] or a["load_seconds"] == 0


def test_sim_waves_go_where_asked(tmp_path, monkeypatch):
    """`squeezehw sim MODEL --random 2 --waves w.vcd` writes w.vcd there, and no trace in the cache."""
    from squeezehw.cli import main
    from squeezehw.quant.random_model import random_model
    model = random_model(np.random.default_rng(3), size=8, classes=3, fires=((2, 4, 4, "none"),))
    path = model.save(tmp_path / "m.npz")
    monkeypatch.chdir(tmp_path)
    before = set(vl.cache_root().rglob("*.vcd"))
    assert main(["sim", str(path), "--random", "2", "--waves", "w.vcd"]) == 0
    assert "$enddefinitions" in (tmp_path / "w.vcd").read_text(errors="replace")[:200000]
    assert set(vl.cache_root().rglob("*.vcd")) - before == set()


def _descendants(pid: int) -> dict[int, str]:
    """{pid: command name} of every live process below ``pid``."""
    children: dict[int, list[int]] = {}
    names = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            name = stat[stat.index("(") + 1:stat.rindex(")")]
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])
            children.setdefault(ppid, []).append(int(d.name))
            names[int(d.name)] = name
    found, todo = {}, [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            found[c] = names[c]
            todo.append(c)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to list child processes")
def test_interrupt_during_compile_leaves_no_compiler(tmp_path):
    """kill -INT of `squeezehw sim` while Verilator compiles: the CLI exits 130 and no
    verilator_bin, make or compiler process it started survives."""
    from squeezehw.quant.random_model import random_model
    model = random_model(np.random.default_rng(11), size=8, classes=3, fires=((2, 4, 4, "none"),))
    path = model.save(tmp_path / "m.npz")
    env = dict(os.environ, SQUEEZEHW_CACHE=str(tmp_path / "cache"))   # a cold build
    # SIGINT as in a user's terminal: a test run started in the background by a non-interactive
    # shell inherits SIGINT *ignored* (POSIX), and Python then never raises KeyboardInterrupt
    cli = subprocess.Popen([sys.executable, "-m", "squeezehw", "sim", str(path), "--random", "1"],
                           env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen: dict[int, str] = {}
    deadline = time.monotonic() + 300
    try:
        # interrupt while the C++ compiler runs (each of its jobs takes seconds, so one that
        # outlives the interrupt is still there to be seen)
        while time.monotonic() < deadline and cli.poll() is None:
            seen.update(_descendants(cli.pid))
            if "cc1plus" in seen.values():
                break
            time.sleep(0.1)
        assert "cc1plus" in seen.values(), f"no compiler process appeared (saw {sorted(set(seen.values()))})"
        assert "make" in seen.values()
        os.kill(cli.pid, signal.SIGINT)
        _, err = cli.communicate(timeout=600)     # generous: the shared machine may be loaded
        assert cli.returncode == 130, err[-2000:]
        time.sleep(1.0)
        survivors = {p: n for p, n in seen.items() if _alive(p)}
        assert survivors == {}, f"still running after the interrupt: {survivors}"
    finally:
        if cli.poll() is None:
            cli.kill()
