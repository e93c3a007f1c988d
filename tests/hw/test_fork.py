import random

import pytest
from amaranth.back import verilog
from squeezehw.sim.streamsim import Traffic, simulate

from squeezehw.errors import UserError
from squeezehw.hw.fork import Fork


@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("traffic", [Traffic.smooth(), Traffic.rough(1), Traffic.rough(2), Traffic.rough(3)],
                         ids=["smooth", "rough1", "rough2", "rough3"])
def test_fork_duplicates(n, traffic):
    rng = random.Random(n)
    beats = [rng.randrange(1 << 16) for _ in range(150)]
    dut = Fork(width=16, n=n)
    got = simulate(dut, {"i": beats}, {f"o{k}": len(beats) for k in range(n)}, traffic, extra_cycles=20)
    for k in range(n):
        assert got[f"o{k}"] == beats, f"output o{k}"
    if traffic == Traffic.smooth():
        assert got["_cycles"] <= len(beats) + 2 + 20  # + extra_cycles


@pytest.mark.parametrize("kw", [dict(width=0), dict(width=8, n=0)])
def test_fork_validation(kw):
    with pytest.raises(UserError, match="Fork"):
        Fork(**kw)


def test_fork_verilog_deterministic():
    texts = [verilog.convert(Fork(width=16, n=3), name="stream_fork", emit_src=False) for _ in range(2)]
    assert texts[0] == texts[1] and "module stream_fork" in texts[0]
