import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import ClockDomain
from squeezehw.sim.streamsim import Traffic, pack_lanes, simulate, unpack_lanes

from squeezehw.errors import UserError
from squeezehw.hw.resize import Resize

TRAFFIC = [Traffic.smooth(), Traffic.rough(1), Traffic.rough(2), Traffic.rough(3)]


class _WithClock(Resize):
    """The identity Resize is purely combinational; the simulator needs a sync domain."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        m.domains.sync = ClockDomain()
        return m


def beats(values, lanes):
    return [pack_lanes(values[j:j + lanes]) for j in range(0, len(values), lanes)]


@pytest.mark.parametrize("li,lo,c", [(1, 4, 8), (4, 1, 8), (2, 8, 16), (8, 2, 16), (4, 6, 12), (6, 4, 12),
                                     (3, 3, 6), (2, 3, 6), (16, 16, 16), (1, 16, 16), (16, 1, 16),
                                     (9, 6, 18), (6, 9, 18), (8, 9, 72),   # ring (lcm lanes)
                                     (16, 9, 144), (48, 27, 432)])   # shift buffer; gcd 3: the running lane offset
@pytest.mark.parametrize("traffic", TRAFFIC, ids=["smooth", "rough1", "rough2", "rough3"])
def test_resize_preserves_order(li, lo, c, traffic):
    rng = np.random.default_rng(li * 100 + lo)
    pixels = 12  # e.g. two frames of 2x3
    values = [int(v) for v in rng.integers(0, 256, c * pixels)]
    dut = (_WithClock if li == lo else Resize)(in_lanes=li, out_lanes=lo, channels=c)
    want = beats(values, lo)
    got = simulate(dut, {"i": beats(values, li)}, {"o": len(want)}, traffic, extra_cycles=10)
    for n, (g, e) in enumerate(zip(got["o"], want)):
        assert g == e, (f"pixel {n * lo // c} channels {(n * lo) % c}..: "
                        f"got {unpack_lanes(g, lo)} want {unpack_lanes(e, lo)}")
    if traffic == Traffic.smooth():
        narrow = max(len(want), len(values) // li)  # beats on the narrow side
        assert got["_cycles"] <= narrow + 3 + 10


@pytest.mark.parametrize("kw", [dict(in_lanes=3, out_lanes=2, channels=8), dict(in_lanes=2, out_lanes=5, channels=8),
                                dict(in_lanes=0, out_lanes=2, channels=8), dict(in_lanes=2, out_lanes=2, channels=0)])
def test_resize_validation(kw):
    with pytest.raises(UserError, match="Resize"):
        Resize(**kw)


def test_resize_verilog_deterministic():
    texts = [verilog.convert(Resize(in_lanes=4, out_lanes=6, channels=12), name="resize", emit_src=False)
             for _ in range(2)]
    assert texts[0] == texts[1] and "module resize" in texts[0]


@pytest.mark.parametrize("li,lo,c,ring", [(8, 9, 72, True), (4, 6, 12, True), (16, 9, 144, False),
                                          (48, 27, 432, False), (9, 16, 144, True), (40, 3, 120, False)])
def test_resize_general_design(li, lo, c, ring):
    # the ring (no barrel shifter) wherever lcm(in, out) lanes cost at most 4x the shift buffer
    # and its read mux is no wider than the shift design's insert mux
    r = Resize(in_lanes=li, out_lanes=lo, channels=c)
    assert r.ring == ring
    assert r.cap_lanes >= li + lo + min(li, lo) - 1
    if ring:
        assert r.cap_lanes % li == 0 and r.cap_lanes % lo == 0


@pytest.mark.parametrize("li,lo,c", [(9, 6, 36), (6, 9, 36), (12, 9, 36), (4, 6, 36), (6, 4, 36),
                                     (16, 9, 144), (48, 27, 432)])
def test_resize_builds_no_multiplier(li, lo, c):
    # the cost model counts no multiplier for a Resize: every $mul must be by a power of two
    # (a shift); `count * 24` became a MULT18X18D in Yosys synth_ecp5 before the running offset
    import re

    from amaranth.back import rtlil
    text = rtlil.convert(Resize(in_lanes=li, out_lanes=lo, channels=c), name="top")
    for cell in re.findall(r"cell \$mul .*?\n\s*end", text, re.S):
        const = re.findall(r"connect \\[AB] \d+'([01]+)", cell)
        assert const and any(int(c, 2) and int(c, 2) & (int(c, 2) - 1) == 0 for c in const), cell
