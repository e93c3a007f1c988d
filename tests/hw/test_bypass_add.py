import numpy as np
import pytest
from amaranth.back import verilog

from squeezehw import golden
from squeezehw.errors import UserError
from squeezehw.hw.bypass_add import BypassAdd
from squeezehw.hw.streamsim import Traffic, pack_lanes, simulate, unpack_lanes
from squeezehw.intmodel import QAdd

TRAFFIC = [Traffic.smooth(), Traffic.rough(1), Traffic.rough(2), Traffic.rough(3)]


def run(q, a, b, lanes, b_signed, traffic):
    """a, b: (C, H, W) arrays; returns got/want beats lists (lanes values each)."""
    c, h, w = a.shape
    to_beats = lambda fm: [pack_lanes(fm[j:j + lanes, y, x]) for y in range(h) for x in range(w)
                           for j in range(0, c, lanes)]
    want = golden.bypass_add(a[None], b[None], q)[0]
    dut = BypassAdd(lanes=lanes, mult_a=q.mult_a, mult_b=q.mult_b, shift=q.shift, b_signed=b_signed)
    wb = to_beats(want)
    got = simulate(dut, {"a": to_beats(a), "b": to_beats(b)}, {"o": len(wb)}, traffic, extra_cycles=10)
    bpp = c // lanes
    for n, (g, e) in enumerate(zip(got["o"], wb)):
        assert g == e, (f"pixel {n // bpp} channels {(n % bpp) * lanes}..: got {unpack_lanes(g, lanes)} "
                        f"want {unpack_lanes(e, lanes)}")
    return got


@pytest.mark.parametrize("b_signed", [False, True])
@pytest.mark.parametrize("lanes", [1, 4])
@pytest.mark.parametrize("traffic", TRAFFIC, ids=["smooth", "rough1", "rough2", "rough3"])
def test_bypass_add_matches_golden(b_signed, lanes, traffic):
    rng = np.random.default_rng(lanes + 2 * b_signed)
    c, h, w = 8, 3, 5
    a = rng.integers(0, 256, (c, h, w)).astype(np.uint8)
    b = (rng.integers(-128, 128, (c, h, w)).astype(np.int8) if b_signed
         else rng.integers(0, 256, (c, h, w)).astype(np.uint8))
    # extremes for saturation at both ends
    a[0, 0, :] = 255
    b[0, 0, :] = 127 if b_signed else 255
    a[1, 0, :] = 0
    if b_signed:
        b[1, 0, :] = -128
    q = QAdd(name="t", mult_a=40000, mult_b=50000 if b_signed else 30000, shift=16)
    got = run(q, a, b, lanes, b_signed, traffic)
    if traffic == Traffic.smooth():
        latency = BypassAdd.from_qadd(q, lanes=lanes).latency
        assert latency == 4
        assert got["_cycles"] <= c * h * w // lanes + latency + 10


@pytest.mark.parametrize("mult_a,mult_b,shift", [(65535, 65535, 1), (1, 65535, 24), (32768, 3, 48), (0, 0, 5),
                                                 (65535, 65535, 17)])
def test_bypass_add_extreme_params(mult_a, mult_b, shift):
    rng = np.random.default_rng(shift)
    for b_signed in (False, True):
        a = rng.integers(0, 256, (4, 2, 3)).astype(np.uint8)
        b = (rng.integers(-128, 128, (4, 2, 3)).astype(np.int8) if b_signed
             else rng.integers(0, 256, (4, 2, 3)).astype(np.uint8))
        q = QAdd(name="t", mult_a=mult_a, mult_b=mult_b, shift=shift)
        run(q, a, b, 2, b_signed, Traffic.rough(shift))


def test_from_qadd():
    from types import SimpleNamespace
    q = QAdd(name="t", mult_a=3, mult_b=4, shift=5)
    d = BypassAdd.from_qadd(q, lanes=2)
    assert (d.mult_a, d.mult_b, d.shift, d.b_signed, d.lanes) == (3, 4, 5, False, 2)
    # complex bypass: the 1x1 conv has no ReLU, so b is int8 (only .relu is consulted)
    q = QAdd(name="t", mult_a=3, mult_b=4, shift=5, conv=SimpleNamespace(relu=False))
    assert BypassAdd.from_qadd(q, lanes=2).b_signed


@pytest.mark.parametrize("kw", [dict(lanes=0), dict(mult_a=-1), dict(mult_b=1 << 16), dict(shift=0), dict(shift=49)])
def test_bypass_add_validation(kw):
    args = dict(lanes=2, mult_a=1, mult_b=1, shift=4, b_signed=False) | kw
    with pytest.raises(UserError, match="BypassAdd"):
        BypassAdd(**args)


def test_bypass_add_verilog_deterministic():
    texts = [verilog.convert(BypassAdd(lanes=2, mult_a=300, mult_b=400, shift=9, b_signed=True),
                             name="bypass_add", emit_src=False) for _ in range(2)]
    assert texts[0] == texts[1] and "module bypass_add" in texts[0]
