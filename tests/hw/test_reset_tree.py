"""The reset tree (squeezehw/hw/reset_tree.py): blocks leave reset together, DEPTH cycles after the
design's reset, the container's ports stay quiet until then, and Yosys keeps the tree's registers
apart (without the keep they merge back into one register)."""
import subprocess

import pytest
from amaranth import Module, ResetInserter, Signal
from amaranth.back import rtlil
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from squeezehw.errors import ToolMissingError
from squeezehw.hw import reset_tree
from squeezehw.hw.fire import Chain
from squeezehw.hw.stream_register import StreamRegister


class Pipe(wiring.Component):
    """Three StreamRegisters in a Chain on the reset tree, ports gated like the Accelerator's."""
    i: In(stream.Signature(8))
    o: Out(stream.Signature(8))

    def elaborate(self, platform):
        m = Module()
        chain = Chain(m, "", reset_levels=reset_tree.DEPTH)
        regs = [chain.add(f"r{k}", StreamRegister(width=8)) for k in range(3)]
        pending = reset_tree.reset_gate(m, "ports", reset_tree.DEPTH)
        m.d.comb += [regs[0].i.payload.eq(self.i.payload), regs[0].i.valid.eq(self.i.valid & ~pending),
                     self.i.ready.eq(regs[0].i.ready & ~pending)]
        for a, b in zip(regs, regs[1:]):
            wiring.connect(m, a.o, b.i)
        m.d.comb += [self.o.payload.eq(regs[-1].o.payload), self.o.valid.eq(regs[-1].o.valid & ~pending),
                     regs[-1].o.ready.eq(self.o.ready & ~pending)]
        return m


def test_ports_quiet_until_the_blocks_are_reset_and_beats_survive():
    dut = Pipe()
    rst = Signal()
    top = ResetInserter(rst)(dut)      # as the Verilator harness resets a design (dut_reset)
    seen = []

    async def bench(ctx):
        ctx.set(dut.o.ready, 0)
        for v in (1, 2, 3):                       # fill the pipe, output stalled
            ctx.set(dut.i.payload, v)
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
        ctx.set(dut.i.valid, 0)
        assert ctx.get(dut.o.valid)
        ctx.set(rst, 1)            # one cycle of the design's reset
        await ctx.tick()
        ctx.set(rst, 0)
        ctx.set(dut.o.ready, 1)
        for _ in range(reset_tree.DEPTH):         # blocks still to be reset: nothing in or out
            assert not ctx.get(dut.o.valid) and not ctx.get(dut.i.ready)
            await ctx.tick()
        assert ctx.get(dut.i.ready) and not ctx.get(dut.o.valid)     # reset: empty, ready
        ctx.set(dut.i.payload, 9)
        ctx.set(dut.i.valid, 1)
        await ctx.tick()
        ctx.set(dut.i.valid, 0)
        for _ in range(10):
            if ctx.get(dut.o.valid):
                seen.append(ctx.get(dut.o.payload))
            await ctx.tick()

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert seen == [9]          # the old beats are gone, the new one arrives once


def _yosys_ff_count(il_text, tmp_path, keep: bool) -> int:
    from squeezehw.toolchain.synth import find_tool
    try:
        yosys = find_tool("yosys")
    except ToolMissingError as e:
        pytest.skip(str(e))
    (tmp_path / "t.il").write_text(il_text)
    script = f"read_rtlil t.il; {reset_tree.YOSYS_KEEP + ';' if keep else ''} synth_ecp5 -top top; stat"
    out = subprocess.run([yosys, "-q", "-p", script, "-l", "log.txt"], cwd=tmp_path, capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr
    log = (tmp_path / "log.txt").read_text()
    return int([line.split()[0] for line in log.splitlines() if line.strip().endswith("TRELLIS_FF")][-1])


def test_yosys_keeps_the_tree_registers_apart(tmp_path):
    dut = Pipe()
    il = rtlil.convert(dut, ports=[dut.i.payload, dut.i.valid, dut.i.ready, dut.o.payload, dut.o.valid,
                                   dut.o.ready])
    kept = _yosys_ff_count(il, tmp_path, keep=True)
    merged = _yosys_ff_count(il, tmp_path, keep=False)
    # kept: DEPTH tree registers per block (3) and for the port gate; merged: one per level
    assert kept - merged == (3 + 1) * reset_tree.DEPTH - reset_tree.DEPTH, (kept, merged)
