import random

import pytest
from amaranth.back import verilog
from amaranth.sim import Simulator
from squeezehw.sim.streamsim import Traffic, simulate

from squeezehw.errors import UserError
from squeezehw.hw.fifo import StreamFIFO
from squeezehw.hw.stream_register import StreamRegister


class _WithClock(StreamFIFO):
    """depth=0 is purely combinational; the simulator needs a sync domain to drive the clock."""

    def elaborate(self, platform):
        from amaranth.hdl import ClockDomain
        m = super().elaborate(platform)
        m.domains.sync = ClockDomain()
        return m


@pytest.mark.parametrize("depth", [0, 1, 2, 5, 16])
@pytest.mark.parametrize("traffic", [Traffic.smooth(), Traffic.rough(1), Traffic.rough(2)],
                         ids=["smooth", "rough1", "rough2"])
def test_fifo_order(depth, traffic):
    rng = random.Random(depth)
    beats = [rng.randrange(1 << 12) for _ in range(200)]
    dut = (_WithClock if depth == 0 else StreamFIFO)(width=12, depth=depth)
    got = simulate(dut, {"i": beats}, {"o": len(beats)}, traffic, extra_cycles=20)
    assert got["o"] == beats
    if traffic == Traffic.smooth():
        # full throughput: 200 beats plus a few cycles of latency
        assert got["_cycles"] <= len(beats) + 4 + 20  # + extra_cycles


def test_fifo_level_and_memory_bits():
    dut = StreamFIFO(width=8, depth=4)
    assert dut.memory_bits == 32
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    levels = []

    async def tb(ctx):
        ctx.set(dut.o.ready, 0)
        ctx.set(dut.i.valid, 1)
        for v in range(6):
            ctx.set(dut.i.payload, v)
            await ctx.tick()
            levels.append(ctx.get(dut.level))
        assert ctx.get(dut.i.ready) == 0  # full
    sim.add_testbench(tb)
    sim.run()
    # depth entries in the FIFO proper plus the output register's two slots
    assert levels[-1] == dut.depth + StreamRegister.CAPACITY and levels[0] == 1


def test_fifo_small_depths_are_full_rate():
    assert StreamFIFO(width=8, depth=1).depth == 3
    assert StreamFIFO(width=8, depth=2).depth == 3


@pytest.mark.parametrize("kw", [dict(width=0, depth=2), dict(width=8, depth=-1), dict(width=8, depth=2.5)])
def test_fifo_validation(kw):
    with pytest.raises(UserError, match="StreamFIFO"):
        StreamFIFO(**kw)


def test_fifo_verilog_deterministic():
    texts = [verilog.convert(StreamFIFO(width=16, depth=8), name="fifo", emit_src=False) for _ in range(2)]
    assert texts[0] == texts[1] and "module fifo" in texts[0]
