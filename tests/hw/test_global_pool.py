"""GlobalSumArgmax against golden.head's sums and argmax (ties, random traffic, frames back to back)."""
from __future__ import annotations

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.sim import Simulator
from squeezehw.sim.streamsim import Traffic, pack_lanes, simulate

from squeezehw.errors import UserError
from squeezehw.hw.errors import FoldingError
from squeezehw.hw.global_pool import GlobalSumArgmax

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


def golden_sums(fmaps):
    """fmaps: (frames, channels, pixels) uint8 -> (logits, classes) as golden.head computes them."""
    logits = fmaps.astype(np.int64).sum(axis=2)
    return logits, np.argmax(logits, axis=1)


def beats_for(fmaps, lanes):
    out = []
    for f in fmaps:                       # (channels, pixels): raster order, channels in beats
        for p in range(f.shape[1]):
            for j in range(f.shape[0] // lanes):
                out.append(pack_lanes(f[j * lanes:(j + 1) * lanes, p]))
    return out


def check_frames(got, fmaps):
    C = fmaps.shape[1]
    logits, classes = golden_sums(fmaps)
    assert len(got) == len(fmaps) * (C + 1)
    for n in range(len(fmaps)):
        frame = got[n * (C + 1):(n + 1) * (C + 1)]
        for c in range(C):
            assert frame[c] == logits[n, c], f"frame {n} class {c}: logit {frame[c]} != {logits[n, c]}"
        assert frame[C] == classes[n], f"frame {n}: class {frame[C]} != {classes[n]} (logits {logits[n]})"


def run(fmaps, lanes, traffic, logit_bits=None):
    C, P = fmaps.shape[1:]
    dut = GlobalSumArgmax(channels=C, lanes=lanes, pixels=P,
                          logit_bits=logit_bits or (255 * P).bit_length())
    r = simulate(dut, {"i": beats_for(fmaps, lanes)}, {"o": len(fmaps) * (C + 1)},
                 traffic=traffic, extra_cycles=20)
    run.last_dut = dut
    return r["o"]


@pytest.mark.parametrize("C,lanes", [(10, 1), (10, 2), (10, 5), (10, 10), (6, 3), (4, 4)])
@pytest.mark.parametrize("seed", [1, 2])
def test_random_frames_rough(C, lanes, seed):
    rng = np.random.default_rng(seed * 100 + C * 10 + lanes)
    fmaps = rng.integers(0, 256, (3, C, 5))
    check_frames(run(fmaps, lanes, Traffic.rough(seed)), fmaps)


@pytest.mark.parametrize("lanes", [1, 2, 4])
def test_smooth_back_to_back(lanes):
    rng = np.random.default_rng(lanes)
    fmaps = rng.integers(0, 256, (3, 4, 3))
    check_frames(run(fmaps, lanes, Traffic.smooth()), fmaps)


@pytest.mark.parametrize("lanes", [1, 3])
def test_ties_lowest_index_wins(lanes):
    C, P = 6, 4
    fmaps = np.zeros((4, C, P), int)
    fmaps[0] = 7                                   # all equal -> class 0
    fmaps[1, 2] = 9; fmaps[1, 4] = 9               # tie between 2 and 4 -> 2
    fmaps[2, 5] = 255; fmaps[2, 3] = 255           # tie at the maximum sum -> 3
    fmaps[3, 5, 0] = 1                             # one step ahead -> 5
    got = run(fmaps, lanes, Traffic.rough(lanes))
    check_frames(got, fmaps)
    assert [got[n * (C + 1) + C] for n in range(4)] == [0, 2, 3, 5]


def test_saturated_sums_and_single_pixel():
    fmaps = np.full((2, 4, 9), 255)
    fmaps[1, 1] = 254
    check_frames(run(fmaps, 2, Traffic.rough(3)), fmaps)
    rng = np.random.default_rng(4)
    fmaps = rng.integers(0, 256, (3, 4, 1))        # pixels == 1: every pixel is the last one
    check_frames(run(fmaps, 1, Traffic.rough(4)), fmaps)
    check_frames(run(fmaps, 4, Traffic.smooth()), fmaps)


def test_wider_logit_bits_and_class_wider_than_logit():
    rng = np.random.default_rng(5)
    fmaps = rng.integers(0, 3, (2, 600, 1))        # 600 classes, logits of 8 bits, class 10 bits
    check_frames(run(fmaps, 20, Traffic.rough(5), logit_bits=8), fmaps)
    assert run.last_dut.out_bits == 10
    fmaps = rng.integers(0, 256, (2, 4, 2))
    check_frames(run(fmaps, 2, Traffic.rough(6), logit_bits=20), fmaps)


def test_accepts_one_beat_per_cycle_and_overlaps_drain():
    """Smooth input never waits while the previous frame drains (the drain FIFO has room)."""
    C, lanes, P, frames = 4, 1, 3, 3
    rng = np.random.default_rng(9)
    fmaps = rng.integers(0, 256, (frames, C, P))
    dut = GlobalSumArgmax(channels=C, lanes=lanes, pixels=P, logit_bits=10)
    beats = beats_for(fmaps, lanes)
    in_cycles, outs = [], []

    async def producer(ctx):
        cycle = 0
        for b in beats:
            ctx.set(dut.i.payload, b)
            ctx.set(dut.i.valid, 1)
            while True:
                _, _, ready = await ctx.tick().sample(dut.i.ready)
                cycle += 1
                if ready:
                    in_cycles.append(cycle)
                    break
        ctx.set(dut.i.valid, 0)

    async def consumer(ctx):
        ctx.set(dut.o.ready, 1)
        while len(outs) < frames * (C + 1):
            _, _, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            if valid:
                outs.append(payload)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer, background=True)
    sim.add_testbench(consumer)
    sim.run()
    check_frames(outs, fmaps)
    assert list(np.diff(in_cycles)) == [1] * (len(beats) - 1), "input stalled"


def test_validation():
    with pytest.raises(FoldingError, match=r"lanes=3 does not divide 10 channels.*\[1, 2, 5, 10\]"):
        GlobalSumArgmax(channels=10, lanes=3, pixels=4, logit_bits=10)
    with pytest.raises(UserError, match=r"logit_bits=9 cannot hold.*logit_bits >= 10"):
        GlobalSumArgmax(channels=10, lanes=1, pixels=4, logit_bits=9)
    with pytest.raises(UserError, match="pixels must be a positive integer"):
        GlobalSumArgmax(channels=10, lanes=1, pixels=0, logit_bits=9)


def test_verilog_deterministic():
    texts = [verilog.convert(GlobalSumArgmax(channels=10, lanes=2, pixels=9, logit_bits=12),
                             name="gpool", emit_src=False) for _ in range(2)]
    assert texts[0] == texts[1]
