"""Fire engine vs the golden model, and the FIFO sizing pass vs simulation."""
import dataclasses

import numpy as np
import pytest
from squeezehw.sim.simulate import image_beats
from squeezehw.sim.streamsim import StreamDeadlock, Traffic, simulate, unpack_lanes

from squeezehw.plan.fifo_sizing import FifoDepthError
from squeezehw.plan.folding import LayerFold
from squeezehw.plan.lowering import fire_plan
from squeezehw.quant import golden
from squeezehw.quant.random_model import random_fire


def fire_golden(f, x):
    s = golden.conv(x, f.squeeze)
    y = np.concatenate([golden.conv(s, f.expand1x1), golden.conv(s, f.expand3x3)], axis=1)
    if f.bypass is not None:
        b = x if f.bypass.conv is None else golden.conv(x, f.bypass.conv)
        y = golden.bypass_add(y, b, f.bypass)
    return y


def make(bypass, seed=0, s=4, e1=8, e3=8):
    rng = np.random.default_rng(seed)
    cin = e1 + e3 if bypass == "simple" else 8
    return random_fire(rng, "fire", cin, s, e1, e3, bypass), rng


def engine(f, h, w, in_lanes, fl, fifos=None):
    """The Fire module's block from its build plan (squeezehw.plan.lowering.fire_plan); ``fifos`` replaces
    the skew FIFOs *without* the plan's deadlock check (to measure the true minimum)."""
    plan = fire_plan(f, height=h, width=w, in_lanes=in_lanes, folds=fl)
    if fifos is not None:
        plan = dataclasses.replace(plan, buffers=dataclasses.replace(plan.buffers, fifos=fifos))
    return plan.block()


def run_fire(dut, x, traffic):
    n, _, h, w = x.shape
    c = dut.fire.out_ch
    r = simulate(dut, {"i": image_beats(x, dut.in_lanes)}, {"o": n * h * w * c // dut.out_lanes}, traffic,
                 extra_cycles=30)
    got = np.array([unpack_lanes(v, dut.out_lanes) for v in r["o"]])
    return got.reshape(n, h, w, c).transpose(0, 3, 1, 2)


def first_difference(got, want):
    idx = np.argwhere(got != want)
    if idx.size == 0:
        return None
    f, c, y, x = idx[0]
    return f"frame {f} pixel ({y},{x}) channel {c}: got {got[f, c, y, x]}, golden {want[f, c, y, x]}"


@pytest.mark.parametrize("bypass,folds,in_lanes,hw", [
    ("none", dict(sq=(8, 4), e1=(4, 8), e3=(4, 8)), 8, (4, 5)),
    ("none", dict(sq=(1, 1), e1=(1, 1), e3=(2, 4)), 1, (3, 3)),
    ("simple", dict(sq=(4, 2), e1=(2, 4), e3=(2, 2)), 4, (5, 4)),
    ("complex", dict(sq=(2, 4), e1=(4, 2), e3=(1, 8), by=(4, 16)), 2, (4, 4)),
    # expand3x3 SIMD that does not divide the 4 squeeze channels: the window runs a tap per beat
    # and a Resize regroups the 36-value vector (folding.window_lanes)
    ("none", dict(sq=(4, 1), e1=(2, 2), e3=(6, 2)), 4, (4, 5)),
    ("simple", dict(sq=(2, 2), e1=(4, 1), e3=(12, 4)), 2, (3, 4)),
    ("none", dict(sq=(1, 4), e1=(1, 8), e3=(36, 1)), 1, (4, 3)),
])
@pytest.mark.parametrize("traffic", [Traffic(), Traffic.rough(3)], ids=["smooth", "rough"])
def test_fire_matches_golden(bypass, folds, in_lanes, hw, traffic):
    f, rng = make(bypass)
    names = {"sq": f.squeeze.name, "e1": f.expand1x1.name, "e3": f.expand3x3.name}
    if bypass == "complex":
        names["by"] = f.bypass.conv.name
    fl = {names[k]: LayerFold(*v) for k, v in folds.items()}
    h, w = hw
    x = rng.integers(0, 256, size=(2, f.squeeze.in_ch, h, w), dtype=np.uint8)
    dut = engine(f, h, w, in_lanes, fl)
    got = run_fire(dut, x, traffic)
    want = fire_golden(f, x)
    assert first_difference(got, want) is None, first_difference(got, want)


@pytest.mark.parametrize("e3_fold,window", [((3, 2), 1), ((3, 8), 10)], ids=["gcd-lanes", "shift-resize"])
def test_fire_window_lanes_avoid_the_shift_resize(e3_fold, window):
    """10 squeeze channels, expand3x3 SIMD 3: a 10 -> 3 Resize would be the general shift design, so
    the window takes gcd(10, 3) = 1 lane when the MVU's 4 folds leave it time (then a 1 -> 3 widen),
    and all 10 channels when they do not (1 fold: the shift design stays); bit-exact either way."""
    from squeezehw.plan.folding import window_lanes
    f, rng = make("none", seed=2, s=10)
    fl = {f.squeeze.name: LayerFold(1, 2), f.expand1x1.name: LayerFold(2, 2), f.expand3x3.name: LayerFold(*e3_fold)}
    assert window_lanes(10, 3, 8 // e3_fold[1]) == window
    x = rng.integers(0, 256, size=(2, f.squeeze.in_ch, 4, 3), dtype=np.uint8)
    dut = engine(f, 4, 3, 1, fl)
    assert dut.window.lanes == window
    got = run_fire(dut, x, Traffic.rough(5))
    want = fire_golden(f, x)
    assert first_difference(got, want) is None, first_difference(got, want)


@pytest.mark.parametrize("e1,e3,bypass", [(4, 12, "none"), (12, 4, "simple")])
def test_fire_unequal_expands(e1, e3, bypass):
    """expand1x1 and expand3x3 with different channel counts (the default Fire has e1 == e3, where a
    concat that swapped its sides, or split by the other side's count, gives the same stream)."""
    f, rng = make(bypass, seed=6, e1=e1, e3=e3)     # seed 5 draws a bypass mult_b above 16 bits
    fl = {f.squeeze.name: LayerFold(2, 2), f.expand1x1.name: LayerFold(2, 2), f.expand3x3.name: LayerFold(4, 4)}
    x = rng.integers(0, 256, size=(2, f.squeeze.in_ch, 3, 3), dtype=np.uint8)
    dut = engine(f, 3, 3, 2, fl)
    got = run_fire(dut, x, Traffic.rough(4))
    want = fire_golden(f, x)
    assert first_difference(got, want) is None, first_difference(got, want)


def _deadlocks(f, fl, h, w, fifos, x) -> bool:
    dut = engine(f, h, w, 1, fl, fifos)
    try:
        run_fire(dut, x, Traffic(watchdog=400))
        return False
    except StreamDeadlock:
        return True


def _smallest_working(f, fl, h, w, need, field, x) -> int:
    lo, hi = 1, getattr(need, field)          # hi is known to work (asserted by the caller)
    while lo < hi:
        mid = (lo + hi) // 2
        if _deadlocks(f, fl, h, w, dataclasses.replace(need, **{field: mid}), x):
            lo = mid + 1
        else:
            hi = mid
    return lo


@pytest.mark.parametrize("field", ["expand1x1_depth", "bypass_depth"])
def test_fifo_depths_are_enough_and_tight(field):
    """The sizing pass's depth runs; the simulated minimum is close below it; one entry under
    the simulated minimum deadlocks and is caught by the watchdog, and anything under the pass's
    depth is refused by the builder's check."""
    f, rng = make("simple", s=4, e1=4, e3=4)
    # narrow lanes everywhere, so the pipeline registers hold little next to a row of skew
    fl = {f.squeeze.name: LayerFold(1, 1), f.expand1x1.name: LayerFold(1, 1),
          f.expand3x3.name: LayerFold(4, 4)}
    h, w = 3, 12
    x = rng.integers(0, 256, size=(1, f.squeeze.in_ch, h, w), dtype=np.uint8)
    # the deadlock minimum (the builder instantiates more for throughput: test_fifos_for_throughput)
    need = fire_plan(f, height=h, width=w, in_lanes=1, folds=fl).buffers.required
    assert not _deadlocks(f, fl, h, w, need, x)
    smallest = _smallest_working(f, fl, h, w, need, field, x)
    slack = getattr(need, field) - smallest
    print(f"{field}: pass {getattr(need, field)}, simulated minimum {smallest}, slack {slack}")
    assert 0 <= slack <= getattr(need, field) // 2 + 4
    if smallest > 1:
        assert _deadlocks(f, fl, h, w, dataclasses.replace(need, **{field: smallest - 1}), x)
    with pytest.raises(FifoDepthError, match="deadlock"):
        fire_plan(f, height=h, width=w, in_lanes=1, folds=fl,
                  fifos=dataclasses.replace(need, **{field: getattr(need, field) - 1}))


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_fifos_for_throughput():
    """The builder instantiates the deadlock minimum plus THROUGHPUT_PIXELS pixels per FIFO, and
    the builder's check accepts exactly the deadlock minimum."""
    from squeezehw.plan.fifo_sizing import THROUGHPUT_PIXELS
    f, rng = make("simple", s=4, e1=4, e3=4)
    fl = {f.squeeze.name: LayerFold(1, 1), f.expand1x1.name: LayerFold(1, 1),
          f.expand3x3.name: LayerFold(4, 4)}
    plan = fire_plan(f, height=3, width=12, in_lanes=1, folds=fl)
    need, built = plan.buffers.required, plan.buffers.fifos
    assert built.expand1x1_depth == need.expand1x1_depth + THROUGHPUT_PIXELS * 4
    assert built.bypass_depth == need.bypass_depth + THROUGHPUT_PIXELS * f.squeeze.in_ch
    fire_plan(f, height=3, width=12, in_lanes=1, folds=fl, fifos=need)     # accepted
