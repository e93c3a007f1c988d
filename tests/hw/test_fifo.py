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


@pytest.mark.parametrize("output_register", [True, False], ids=["outreg", "no_outreg"])
@pytest.mark.parametrize("depth", [0, 1, 2, 5, 16])
@pytest.mark.parametrize("traffic", [Traffic.smooth(), Traffic.rough(1), Traffic.rough(2)],
                         ids=["smooth", "rough1", "rough2"])
def test_fifo_order(depth, traffic, output_register):
    rng = random.Random(depth)
    beats = [rng.randrange(1 << 12) for _ in range(200)]
    dut = (_WithClock if depth == 0 else StreamFIFO)(width=12, depth=depth, output_register=output_register)
    got = simulate(dut, {"i": beats}, {"o": len(beats)}, traffic, extra_cycles=20)
    assert got["o"] == beats
    if traffic == Traffic.smooth():
        # full throughput: 200 beats plus the latency (3, or 4 with the block-RAM output register)
        assert dut.latency == (0 if depth == 0 else 3 + output_register)
        assert got["_cycles"] <= len(beats) + dut.latency + 1 + 20  # + extra_cycles


@pytest.mark.parametrize("output_register", [True, False], ids=["outreg", "no_outreg"])
def test_fifo_level_and_memory_bits(output_register):
    dut = StreamFIFO(width=8, depth=4, output_register=output_register)
    assert dut.memory_bits == 32
    full = dut.depth + output_register + StreamRegister.CAPACITY
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    levels, readies = [], []

    async def tb(ctx):
        ctx.set(dut.o.ready, 0)
        ctx.set(dut.i.valid, 1)
        for v in range(full + 2):
            ctx.set(dut.i.payload, v)
            readies.append(ctx.get(dut.i.ready))
            await ctx.tick()
            levels.append(ctx.get(dut.level))
        assert ctx.get(dut.i.ready) == 0  # full
    sim.add_testbench(tb)
    sim.run()
    # depth entries in the FIFO proper, the block-RAM output register's one, the skid buffer's two
    assert levels[-1] == full and levels[0] == 1
    assert sum(readies) == full


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
