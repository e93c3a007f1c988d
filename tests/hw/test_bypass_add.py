import numpy as np
import pytest
from amaranth.back import verilog
from squeezehw.sim.streamsim import Traffic, pack_lanes, simulate, unpack_lanes

from squeezehw.errors import UserError
from squeezehw.hw.bypass_add import BypassAdd
from squeezehw.quant import golden
from squeezehw.quant.intmodel import QAdd

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


# ---- exact rounding ties and both clamp edges ----------------------------------------------------

def edge_pairs(mult_a, mult_b, shift, b_signed, per_kind=3, seed=0):
    """(a, b) pairs, from all 65,536, that put the exact sum a*mult_a + b*mult_b on a rounding tie
    (exactly .5 before the shift, where half up and half down give different clamped outputs) and
    the rounded value exactly on each clamp edge (-1, 0, 255, 256); plus a few random pairs.
    Returns the pairs and the kinds each one covers (worked out here with Python ints)."""
    rng = np.random.default_rng(seed)
    a = np.repeat(np.arange(256), 256)
    b = np.tile(np.arange(-128, 128) if b_signed else np.arange(256), 256)
    num = a.astype(object) * mult_a + b.astype(object) * mult_b
    half = 1 << (shift - 1)
    q = np.array([(int(n) + half) >> shift for n in num])
    tie = np.array([int(n) % (1 << shift) == half for n in num]) & (q >= 1) & (q <= 255)
    kinds = {"tie": tie, "q=-1": q == -1, "q=0": q == 0, "q=255": q == 255, "q=256": q == 256}
    picked = []
    for mask in kinds.values():
        idx = np.flatnonzero(mask)
        picked += list(rng.choice(idx, min(per_kind, len(idx)), replace=False)) if len(idx) else []
    picked += list(rng.integers(0, len(a), 6))
    covered = {k for k, mask in kinds.items() if mask[picked].any()}
    return a[picked], b[picked], covered


@pytest.mark.parametrize("b_signed", [False, True])
@pytest.mark.parametrize("mult_a,mult_b,shift", [(49152, 32768, 15), (33792, 50176, 15), (52000, 36000, 16),
                                                 (45056, 61440, 16)])
def test_bypass_add_rounding_ties_and_clamp_edges(mult_a, mult_b, shift, b_signed):
    """Half-up rounding on exact ties and saturation exactly at the edges: a bypass that rounds
    half down, or clamps at 256 instead of 255, gives a different output on these pairs."""
    a, b, covered = edge_pairs(mult_a, mult_b, shift, b_signed, seed=shift + b_signed)
    # the stimulus must hold every case, or the test has lost its teeth
    need = {"tie", "q=0", "q=255", "q=256"} | ({"q=-1"} if b_signed else set())
    assert need <= covered, f"stimulus misses {need - covered}"
    if len(a) % 2:
        a, b = np.append(a, 255), np.append(b, 127)
    n = len(a) // 2
    fa = a.reshape(n, 2).T.reshape(2, 1, n).astype(np.uint8)
    fb = b.reshape(n, 2).T.reshape(2, 1, n).astype(np.int8 if b_signed else np.uint8)
    q = QAdd(name="t", mult_a=mult_a, mult_b=mult_b, shift=shift)
    # the golden model on these pairs against the contract, in Python ints
    want = golden.bypass_add(fa[None], fb[None], q)[0]
    for av, bv, wv in zip(fa.reshape(-1), fb.reshape(-1), want.reshape(-1)):
        exact = (int(av) * mult_a + int(bv) * mult_b + (1 << (shift - 1))) >> shift
        assert int(wv) == min(max(exact, 0), 255), (av, bv)
    run(q, fa, fb, 2, b_signed, Traffic.rough(shift))
