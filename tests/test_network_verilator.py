"""The whole accelerator in Verilator (through cocotb), bit for bit against the golden model.

Builds are cached by content (build/verilator), so the default model's design is compiled once per
run and shared by the tests below.
"""
import copy

import numpy as np
import pytest
from squeezehw.sim.simulate import locate_mismatch, simulate_frames

from squeezehw.pipeline import default_int_model
from squeezehw.plan.folding import default_folding
from squeezehw.quant.default_model import mnist_split
from squeezehw.quant.random_model import random_model
from squeezehw.toolchain.verilator import SimTraffic


@pytest.fixture(scope="module")
def default():
    model = default_int_model(progress=False)
    return model, default_folding(model)


def test_default_model_20_real_digits_back_to_back(default):
    model, fold = default
    _, _, tx, ty = mnist_split()
    rep = simulate_frames(model, fold, tx[:20], progress=False)
    assert rep.mismatches == [] and rep.bit_exact
    assert rep.classes == rep.golden_classes and len(rep.classes) == 20
    assert rep.cycles_per_frame is not None and rep.latency_cycles > 0
    print(f"default model: {rep.cycles_per_frame} cycles/frame, MAC efficiency {rep.mac_efficiency:.3f}, "
          f"{rep.sim_cycles_per_second:,.0f} cycles/s")


@pytest.mark.parametrize("seed", [2, 7])
def test_default_model_under_random_gaps_and_backpressure(default, seed):
    model, fold = default
    _, _, tx, _ = mnist_split()
    rep = simulate_frames(model, fold, tx[20:40], traffic=SimTraffic.rough(seed), progress=False)
    assert rep.mismatches == [] and rep.bit_exact


def test_reset_in_the_middle_of_a_frame(default):
    model, fold = default
    _, _, tx, _ = mnist_split()
    rep = simulate_frames(model, fold, tx[40:44], traffic=SimTraffic.rough(5), reset_after=30000,
                          progress=False)
    assert rep.mismatches == [] and rep.bit_exact


def test_random_model_with_both_bypasses_and_first_difference_is_located():
    rng = np.random.default_rng(11)
    model = random_model(rng, size=10, classes=6)
    fold = default_folding(model)
    x = rng.integers(0, 256, size=(3, 1, 10, 10), dtype=np.uint8)
    rep = simulate_frames(model, fold, x, traffic=SimTraffic.rough(4), progress=False)
    assert rep.bit_exact, rep.mismatches
    # a fault in the second Fire's expand3x3 weights must be traced to that layer
    bad = copy.deepcopy(model)
    fire = bad.layers[3]
    fire.expand3x3.weight = fire.expand3x3.weight.copy()
    fire.expand3x3.weight[1, 0, 1, 1] ^= 0x10
    where = locate_mismatch(bad, fold, x[:1], progress=False, golden_model=model)
    assert where is not None and where.startswith(f"{fire.name}:"), where
    assert "pixel (y=" in where and "channel 9" in where, where


def test_waveform_dump(tmp_path):
    rng = np.random.default_rng(3)
    model = random_model(rng, size=8, classes=3, fires=((2, 4, 4, "none"),))
    x = rng.integers(0, 256, size=(2, 1, 8, 8), dtype=np.uint8)
    rep = simulate_frames(model, default_folding(model), x, waves=tmp_path / "run.vcd", progress=False)
    assert rep.bit_exact and rep.waves == str(tmp_path / "run.vcd")
    assert "$enddefinitions" in (tmp_path / "run.vcd").read_text(errors="replace")[:200000]
