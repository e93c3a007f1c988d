import random

import pytest
from squeezehw.sim.streamsim import Traffic, simulate

from squeezehw.hw.errors import FoldingError
from squeezehw.hw.stream_register import StreamRegister


@pytest.mark.parametrize("traffic", [Traffic.smooth(), Traffic.rough(1), Traffic.rough(2)],
                         ids=["smooth", "rough1", "rough2"])
def test_stream_register_keeps_order_and_rate(traffic):
    rng = random.Random(7)
    beats = [rng.randrange(1 << 10) for _ in range(300)]
    got = simulate(StreamRegister(width=10), {"i": beats}, {"o": len(beats)}, traffic, extra_cycles=20)
    assert got["o"] == beats                      # nothing dropped, duplicated or reordered
    if traffic == Traffic.smooth():
        assert got["_cycles"] <= len(beats) + 2 + 20   # one beat per cycle, latency 1


def test_stream_register_rejects_bad_width():
    with pytest.raises(FoldingError, match="width"):
        StreamRegister(width=0)
