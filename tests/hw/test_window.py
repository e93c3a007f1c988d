import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.sim import Simulator
from squeezehw.sim.streamsim import Traffic, pack_lanes, simulate, unpack_lanes

from squeezehw.errors import UserError
from squeezehw.hw.window import SlidingWindow


def to_beats(fm, lanes):
    c, h, w = fm.shape
    return [pack_lanes(fm[j:j + lanes, y, x]) for y in range(h) for x in range(w) for j in range(0, c, lanes)]


def im2col_beats(fm, k, s, p, lanes, ho, wo):
    """Reference: for each output pixel the (ky, kx, c) window values, zero outside the input."""
    c, h, w = fm.shape
    out = []
    for oy in range(ho):
        for ox in range(wo):
            for ky in range(k):
                for kx in range(k):
                    y, x = oy * s - p + ky, ox * s - p + kx
                    inside = 0 <= y < h and 0 <= x < w
                    v = fm[:, y, x] if inside else np.zeros(c, dtype=fm.dtype)
                    out += [pack_lanes(v[j:j + lanes]) for j in range(0, c, lanes)]
    return out


def check(c, h, w, k, s, p, lanes, traffic, frames=2, out_hw=None, seed=0, tr=True):
    rng = np.random.default_rng(seed)
    kw = {} if out_hw is None else dict(out_height=out_hw[0], out_width=out_hw[1])
    dut = SlidingWindow(channels=c, height=h, width=w, kernel=k, stride=s, padding=p, lanes=lanes,
                        timing_registers=tr, **kw)
    ho, wo = dut.out_height, dut.out_width
    fms = [rng.integers(1, 256, (c, h, w)) for _ in range(frames)]  # nonzero: padding shows as 0
    inp = sum((to_beats(f, lanes) for f in fms), [])
    want = sum((im2col_beats(f, k, s, p, lanes, ho, wo) for f in fms), [])
    assert len(want) == frames * dut.out_beats_per_frame
    got = simulate(dut, {"i": inp}, {"o": len(want)}, traffic, extra_cycles=20)
    bpp, taps = c // lanes, k * k
    per_pix = taps * bpp
    for n, (g, e) in enumerate(zip(got["o"], want)):
        if g != e:
            pix, r = divmod(n, per_pix)
            f, pix = divmod(pix, ho * wo)
            tap, beat = divmod(r, bpp)
            raise AssertionError(f"frame {f} out pixel {divmod(pix, wo)} tap {divmod(tap, k)} channels "
                                 f"{beat * lanes}..: got {unpack_lanes(g, lanes)} want {unpack_lanes(e, lanes)}")
    return dut, got


# both builds: with the timing registers (the default) and without (iCE40: Target.timing_registers)
TR = pytest.mark.parametrize("tr", [True, False], ids=["treg", "comb"])

CASES = [  # c, h, w, k, s, p, lanes, out_hw
    (2, 5, 6, 3, 1, 1, 1, None),      # expand3x3 style
    (4, 5, 5, 3, 1, 1, 4, None),      # lanes = channels
    (4, 6, 5, 3, 1, 1, 2, None),      # lanes a divisor
    (2, 7, 7, 3, 2, 0, 2, None),      # conv1 of v1.1
    (2, 8, 8, 3, 2, 0, 1, None),      # even size, stride 2
    (1, 11, 10, 7, 2, 0, 1, None),    # conv1 of v1.0
    (2, 7, 7, 3, 2, 0, 2, (3, 3)),    # ceil-mode pool 7 -> 3 (conv size)
    (2, 8, 8, 3, 2, 0, 1, (4, 4)),    # ceil-mode pool 8 -> 4 (overhang)
    (1, 6, 9, 3, 2, 0, 1, (3, 4)),    # ceil-mode, overhang on both
    (2, 1, 5, 3, 1, 1, 2, None),      # one row
    (2, 5, 1, 3, 1, 1, 1, None),      # one column
    (1, 1, 1, 3, 1, 1, 1, None),      # one pixel
    (3, 4, 4, 1, 1, 0, 3, None),      # 1x1
    (2, 4, 6, 2, 2, 0, 1, None),      # K == S
]


@TR
@pytest.mark.parametrize("case", CASES, ids=[str(c) for c in CASES])
@pytest.mark.parametrize("traffic", [Traffic.smooth(), Traffic.rough(1), Traffic.rough(2)],
                         ids=["smooth", "rough1", "rough2"])
def test_window_matches_im2col(case, traffic, tr):
    c, h, w, k, s, p, lanes, out_hw = case
    dut, got = check(c, h, w, k, s, p, lanes, traffic, out_hw=out_hw, seed=h * w + k, tr=tr)


SLOW_IN = Traffic(gap=0.7, stall=0.0, burst=8, seed=5)     # reader keeps catching up with the writer
SLOW_OUT = Traffic(gap=0.0, stall=0.8, burst=8, seed=6)    # writer keeps running into the reader


@pytest.mark.parametrize("traffic", [SLOW_IN, SLOW_OUT], ids=["slow_in", "slow_out"])
@pytest.mark.parametrize("case", [
    (2, 6, 5, 3, 1, 1, 1, None), (1, 9, 8, 3, 2, 0, 1, (4, 4)), (2, 4, 6, 2, 2, 0, 2, None),
    # trailing rows no window uses: the reader finishes a frame before the writer does
    (2, 8, 8, 3, 2, 0, 1, None), (2, 8, 1, 1, 2, 0, 1, (4, 1)), (1, 7, 5, 1, 3, 0, 1, None)])
@TR
def test_window_one_sided_traffic(case, traffic, tr):
    c, h, w, k, s, p, lanes, out_hw = case
    check(c, h, w, k, s, p, lanes, traffic, frames=3, out_hw=out_hw, tr=tr)


def _random_cases(n, seed):
    import random
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        k = rng.choice([1, 2, 3, 5])
        s = rng.choice([1, 2, 3])
        p = rng.randrange(k)
        h, w = rng.randint(1, 8), rng.randint(1, 8)
        c = rng.choice([1, 2, 4])
        lanes = rng.choice([d for d in (1, 2, 4) if c % d == 0])
        ch, cw = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        if ch < 1 or cw < 1:
            continue
        # sometimes the ceil-mode style larger output (every window still starts inside)
        oh = max(ch, (h - 1 + p) // s + 1) if rng.random() < 0.3 else ch
        ow = max(cw, (w - 1 + p) // s + 1) if rng.random() < 0.3 else cw
        out.append((c, h, w, k, s, p, lanes, (oh, ow)))
    return out


@pytest.mark.parametrize("case", _random_cases(12, 7), ids=str)
@TR
def test_window_random_shapes(case, tr):
    c, h, w, k, s, p, lanes, out_hw = case
    check(c, h, w, k, s, p, lanes, Traffic.rough(sum(case[:7])), frames=2, out_hw=out_hw, tr=tr)


@pytest.mark.parametrize("case", [(4, 6, 6, 3, 1, 1, 2, None), (2, 9, 9, 3, 2, 0, 1, None),
                                  (1, 13, 13, 7, 2, 0, 1, None), (2, 8, 8, 3, 2, 0, 1, (4, 4))])
@TR
def test_window_full_throughput(case, tr):
    """Smooth traffic, 3 back-to-back frames: one output beat per cycle, apart from the first
    frame's fill (the input rows the first output row needs) and a few cycles of latency."""
    c, h, w, k, s, p, lanes, out_hw = case
    frames = 3
    dut, got = check(c, h, w, k, s, p, lanes, Traffic.smooth(), frames=frames, out_hw=out_hw, tr=tr)
    fill = min(h, k - p) * w * (c // lanes)
    assert got["_cycles"] - 20 <= frames * dut.out_beats_per_frame + fill + 4, got["_cycles"]


def transfer_cycles(dut, beats, n_out, seed, p_in=0.7, p_out=0.6):
    """Cycles of every input and output transfer (and the output payloads) under valid/ready
    patterns fixed per cycle (the same for any block): beat j is offered from the first cycle the
    input pattern allows after beat j-1 was taken, and held until taken."""
    rng = np.random.default_rng(seed)
    limit = 20 * (len(beats) + n_out) + 200
    gate_in, gate_out = rng.random(limit) < p_in, rng.random(limit) < p_out
    ins, outs = [], []

    async def producer(ctx):
        cycle = 0
        for beat in beats:
            while not gate_in[cycle]:
                ctx.set(dut.i.valid, 0)
                await ctx.tick()
                cycle += 1
            ctx.set(dut.i.payload, beat)
            ctx.set(dut.i.valid, 1)
            while True:
                _, _, ready = await ctx.tick().sample(dut.i.ready)
                cycle += 1
                if ready:
                    ins.append(cycle - 1)
                    break
        ctx.set(dut.i.valid, 0)

    async def consumer(ctx):
        cycle = 0
        while len(outs) < n_out:
            assert cycle < limit - 1
            rdy = bool(gate_out[cycle])
            ctx.set(dut.o.ready, rdy)
            _, _, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            if valid and rdy:
                outs.append((cycle, payload))
            cycle += 1

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer, background=True)
    sim.add_testbench(consumer)
    sim.run()
    return ins, outs


@pytest.mark.parametrize("case", CASES, ids=[str(c) for c in CASES])
def test_window_timing_registers_keep_cycles(case):
    """The build without timing registers (iCE40) takes and gives every beat in the same cycle as
    the default build, under random input gaps and output stalls, over 2 frames."""
    c, h, w, k, s, p, lanes, out_hw = case
    kw = {} if out_hw is None else dict(out_height=out_hw[0], out_width=out_hw[1])
    rng = np.random.default_rng(h * w + k)
    inp = sum((to_beats(rng.integers(1, 256, (c, h, w)), lanes) for _ in range(2)), [])
    runs = []
    for tr in (True, False):
        dut = SlidingWindow(channels=c, height=h, width=w, kernel=k, stride=s, padding=p, lanes=lanes,
                            timing_registers=tr, **kw)
        runs.append(transfer_cycles(dut, inp, 2 * dut.out_beats_per_frame, seed=h + w + k + s))
    assert runs[0] == runs[1]


def test_window_attributes():
    d = SlidingWindow(channels=16, height=13, width=13, kernel=3, stride=1, padding=1, lanes=4)
    assert (d.out_height, d.out_width, d.rows) == (13, 13, 4)
    assert d.memory_bits == 4 * 13 * 16 * 8
    assert d.out_beats_per_frame == 13 * 13 * 9 * 4
    assert d.input_skew_pixels == 0


@pytest.mark.parametrize("kw,msg", [
    (dict(lanes=3), "lanes=3 does not divide channels=4"),
    (dict(padding=3), "padding=3"),
    (dict(kernel=9, padding=0), "does not fit"),
    (dict(out_height=9), "out_height=9"),
    (dict(stride=0), "stride=0"),
])
def test_window_validation(kw, msg):
    args = dict(channels=4, height=5, width=5, kernel=3, stride=1, padding=1, lanes=2) | kw
    with pytest.raises(UserError, match=msg):
        SlidingWindow(**args)


def test_window_verilog_deterministic():
    mk = lambda: SlidingWindow(channels=4, height=5, width=6, kernel=3, stride=2, padding=1, lanes=2)
    texts = [verilog.convert(mk(), name="window", emit_src=False) for _ in range(2)]
    assert texts[0] == texts[1] and "module window" in texts[0]
