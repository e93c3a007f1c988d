"""The cost model against the hardware: measured Verilator cycles per frame (smooth traffic, frames
back to back) within 5 % of ``Folding.summary``'s ``expected_cycles_per_frame``.

Three designs, chosen to share Verilator builds with tests/test_network_verilator.py (builds are
cached by content; the harness size is rounded up to 8 frames): the default model with its default
folding (8 frames share the 4-frame reset test's build), the random model with both bypasses used
there, and a random model with a strided conv1, two pools (one ceil-mode), a simple bypass and a
multiplier-budget folding (conv1 PE 16, pool lanes 2, expand3x3 SIMD 4/8 and PE 2); and the first
random model again with banked weight memories (hw/mvu.py ``weight_bank_depth``, forced small).
Each distinct design costs one Verilator build (about 20 s for the small models, 1-2 min for the
default one).
"""
import numpy as np
from squeezehw.sim.simulate import simulate_frames

from squeezehw.plan.folding import auto_fold, default_folding
from squeezehw.quant.random_model import random_model
from squeezehw.toolchain.verilator import SimTraffic

TOLERANCE = 0.05
FRAMES = 6          # <= 8: the same harness build as the 3- and 4-frame network tests


def check(model, fold, images, **kw):
    rep = simulate_frames(model, fold, images, traffic=SimTraffic(), progress=False, **kw)
    assert rep.bit_exact, rep.mismatches
    want = fold.summary(model)["expected_cycles_per_frame"]
    ratio = rep.cycles_per_frame / want
    print(f"{model.name}: measured {rep.cycles_per_frame} cycles/frame, cost model {want} "
          f"({ratio:.3f}), MAC efficiency {rep.mac_efficiency:.3f}")
    assert abs(ratio - 1) <= TOLERANCE, (
        f"{model.name}: measured {rep.cycles_per_frame} cycles/frame, cost model {want} "
        f"({100 * (ratio - 1):+.1f} %)")
    return rep


def test_default_model():
    from squeezehw.pipeline import default_int_model
    from squeezehw.quant.default_model import mnist_split
    model = default_int_model(progress=False)
    _, _, tx, _ = mnist_split()
    rep = check(model, default_folding(model), tx[40:40 + FRAMES])
    assert rep.mac_efficiency >= 0.90


def test_random_model_both_bypasses():
    rng = np.random.default_rng(11)
    model = random_model(rng, size=10, classes=6)          # as in test_network_verilator.py
    x = rng.integers(0, 256, size=(FRAMES, 1, 10, 10), dtype=np.uint8)
    check(model, default_folding(model), x)


def test_random_model_strided_two_pools_budget_folding():
    rng = np.random.default_rng(5)
    model = random_model(rng, in_ch=3, size=19, conv1=(16, 3, 2, 0),
                         fires=((4, 8, 8, "simple"), (8, 8, 16, "none")), pool_after=(0, 1),
                         classes=4, name="random_strided")
    fold = auto_fold(model, max_multipliers=96)
    x = rng.integers(0, 256, size=(FRAMES, 3, 19, 19), dtype=np.uint8)
    check(model, fold, x)


def test_profiler_on_a_small_model():
    """squeezehw.sim.profile in Amaranth's simulator: every stream moves the expected number of beats
    and the measured frame time is the cost model's (no Verilator build)."""
    from squeezehw.sim.profile import format_table, profile
    rng = np.random.default_rng(11)
    model = random_model(rng, size=10, classes=6)
    fold = default_folding(model)
    rep = profile(model, fold, frames=3, detail=True)
    assert rep["finished"]
    rows = {r["stream"]: r for r in rep["rows"]}
    from squeezehw.plan.folding import window_lanes
    lanes = window_lanes(model.in_ch, fold["features.0"].simd)    # conv1's window takes these
    assert rows["features.0.in"]["xfers"] == 3 * 10 * 10 * model.in_ch // lanes
    assert rows["classifier.1.out"]["xfers"] == 3 * (model.classes + 1)
    assert any("/squeeze.o" in name for name in rows)           # detail: inside the Fire modules
    assert "features.1.fifo.o" in rows                          # the pool's rate-smoothing FIFO
    assert abs(rep["cycles_per_frame"] / rep["expected_cycles_per_frame"] - 1) <= TOLERANCE
    assert "cycles/frame" in format_table(rep)


def test_kxk_simd_spanning_kernel_taps():
    """3x3 convs with SIMD = K*K*C (window at one tap per beat, a Resize in front of the MVU) and
    PE 1: the Fire's concat lanes must still keep up (folding.fire_out_lanes), so the pace is the
    cost model's."""
    from squeezehw.plan.folding import Folding, LayerFold, stages
    rng = np.random.default_rng(5)
    model = random_model(rng, in_ch=3, size=19, conv1=(16, 3, 2, 0),
                         fires=((4, 32, 32, "none"), (8, 8, 16, "none")), pool_after=(0, 1),
                         classes=4, name="random_wide_e3")
    # everything else as parallel as it goes, so the expand3x3 units (and their concat) set the pace
    layers = dict(auto_fold(model, max_multipliers=10_000).layers)
    for s in stages(model):
        if s.name.endswith("expand3x3"):
            layers[s.name] = LayerFold(s.vector, 1)
    x = rng.integers(0, 256, size=(FRAMES, 3, 19, 19), dtype=np.uint8)
    check(model, Folding(layers), x)


def test_banked_weight_memories():
    """MVUs with banked weight memories (hw/mvu.py ``weight_bank_depth``: one more pipeline stage,
    a deeper output FIFO) next to unbanked ones: bit-exact, and the frame time is the cost
    model's (banks of 32 words: the 96- and 64-word memories are banked, the others not)."""
    from squeezehw.plan.lowering import Target
    rng = np.random.default_rng(11)
    model = random_model(rng, size=10, classes=6)
    x = rng.integers(0, 256, size=(FRAMES, 1, 10, 10), dtype=np.uint8)
    check(model, default_folding(model), x, target=Target(bank_depth=32))


def test_ice40_build_without_timing_registers():
    """An iCE40 build (Target board icebreaker: no reset tree, no FIFO output registers, windows
    and MVUs without their timing registers; serial requantiser as on the iCEBreaker): bit-exact,
    and the frame time is still the cost model's."""
    from squeezehw.plan.lowering import Target
    rng = np.random.default_rng(11)
    model = random_model(rng, size=10, classes=6)
    x = rng.integers(0, 256, size=(FRAMES, 1, 10, 10), dtype=np.uint8)
    target = Target(board="icebreaker", requant="serial")
    assert not target.timing_registers
    check(model, default_folding(model), x, target=target)
