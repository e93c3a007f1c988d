"""Stress: random foldings drawn from the valid space, random traffic, whole design in Verilator.

Each folding gives every conv a random SIMD/PE among the divisors its shape allows (and every pool
random lanes), so lane conversions, fold counts of 1 and many, and Fire output widths all vary.
Every frame must be bit-exact, none dropped, duplicated or reordered (the harness counts beats and
the golden comparison is per frame).
"""
import numpy as np
import pytest
from squeezehw.sim.simulate import simulate_frames

from squeezehw.plan.folding import Folding, LayerFold, stages
from squeezehw.quant.random_model import random_model
from squeezehw.toolchain.verilator import SimTraffic


def random_folding(model, rng) -> Folding:
    layers = {}
    for s in stages(model):
        layers[s.name] = LayerFold(int(rng.choice(s.simd_choices())), int(rng.choice(s.pe_choices())))
    return Folding(layers)


@pytest.mark.parametrize("seed", [101, 202])
def test_random_folding_bit_exact_under_random_traffic(seed):
    rng = np.random.default_rng(seed)
    model = random_model(rng, size=9, classes=4, conv1=(8, 3, 1, 1),
                         fires=((4, 8, 8, "complex"), (4, 8, 8, "simple")), pool_after=(1,))
    fold = random_folding(model, rng)
    fold.validate(model)
    x = rng.integers(0, 256, size=(5, 1, 9, 9), dtype=np.uint8)
    rep = simulate_frames(model, fold, x, traffic=SimTraffic.rough(seed), progress=False)
    assert rep.bit_exact, (fold.layers, rep.mismatches)
    assert len(rep.classes) == 5
