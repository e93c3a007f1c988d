import numpy as np
import pytest
from amaranth.back import verilog
from squeezehw.sim.streamsim import Traffic, pack_lanes, simulate, unpack_lanes

from squeezehw.errors import UserError
from squeezehw.hw.concat import Concat

TRAFFIC = [Traffic.smooth(), Traffic.rough(1), Traffic.rough(2), Traffic.rough(3)]


def to_beats(fm, lanes):
    """(C, H, W) -> stream beats in docs/numerics.md order."""
    c, h, w = fm.shape
    return [pack_lanes(fm[j:j + lanes, y, x]) for y in range(h) for x in range(w) for j in range(0, c, lanes)]


@pytest.mark.parametrize("lanes,ca,cb", [(1, 2, 3), (2, 4, 2), (4, 8, 8), (4, 4, 12)])
@pytest.mark.parametrize("traffic", TRAFFIC, ids=["smooth", "rough1", "rough2", "rough3"])
def test_concat_matches_torch_cat(lanes, ca, cb, traffic):
    rng = np.random.default_rng(ca * 10 + cb)
    h, w, frames = 3, 4, 2
    fa = [rng.integers(0, 256, (ca, h, w)) for _ in range(frames)]
    fb = [rng.integers(0, 256, (cb, h, w)) for _ in range(frames)]
    a = sum((to_beats(f, lanes) for f in fa), [])
    b = sum((to_beats(f, lanes) for f in fb), [])
    want = sum((to_beats(np.concatenate([x, y], 0), lanes) for x, y in zip(fa, fb)), [])
    dut = Concat(lanes=lanes, channels_a=ca, channels_b=cb)
    got = simulate(dut, {"a": a, "b": b}, {"o": len(want)}, traffic, extra_cycles=10)
    for n, (g, e) in enumerate(zip(got["o"], want)):
        bpp = (ca + cb) // lanes
        pix = n // bpp
        assert g == e, (f"frame {pix // (h * w)} pixel {pix % (h * w)} channels "
                        f"{(n % bpp) * lanes}..: got {unpack_lanes(g, lanes)} want {unpack_lanes(e, lanes)}")
    if traffic == Traffic.smooth():
        assert got["_cycles"] <= len(want) + 2 + 10


@pytest.mark.parametrize("kw", [dict(lanes=3, channels_a=6, channels_b=4), dict(lanes=0, channels_a=2, channels_b=2),
                                dict(lanes=2, channels_a=0, channels_b=2)])
def test_concat_validation(kw):
    with pytest.raises(UserError, match="Concat"):
        Concat(**kw)


def test_concat_verilog_deterministic():
    texts = [verilog.convert(Concat(lanes=2, channels_a=4, channels_b=6), name="concat", emit_src=False)
             for _ in range(2)]
    assert texts[0] == texts[1] and "module concat" in texts[0]
