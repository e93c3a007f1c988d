"""Folding rules and the automatic folder (cost model only, no hardware)."""
import numpy as np
import pytest

from squeezehw.errors import UserError
from squeezehw.plan.folding import Folding, FoldingFileError, LayerFold, auto_fold, stages, window_lanes
from squeezehw.quant.random_model import random_model


def small_model():
    return random_model(np.random.default_rng(3), in_ch=3, size=16, conv1=(16, 3, 2, 0),
                        fires=((4, 16, 16, None), (8, 32, 32, "simple")), pool_after=(0,), classes=10)


def test_window_lanes_rule():
    assert window_lanes(16, 8) == 8        # divides the channels: the window feeds the MVU directly
    assert window_lanes(16, 12) == 16      # does not: a tap per beat, then a Resize to 12 lanes
    assert window_lanes(3, 9) == 3
    # 40 -> 3 would be the Resize's shift design: gcd(40, 3) = 1 lane when the MVU has >= 3 folds
    assert window_lanes(40, 3, folds=160) == 1 and window_lanes(40, 3, folds=2) == 40
    assert window_lanes(40, 6, folds=3) == 2 and window_lanes(40, 6, folds=2) == 40   # gcd 2: 3x the beats
    # a ring Resize too: its line buffer would be a wide, shallow memory (8 -> 9, 40 -> 12, 64 -> 24)
    assert window_lanes(8, 9, folds=100) == 1 and window_lanes(8, 9, folds=8) == 8
    assert window_lanes(40, 12, folds=100) == 4 and window_lanes(40, 12, folds=2) == 40
    assert window_lanes(64, 24, folds=256) == 8


def test_resize_design_choice():
    from squeezehw.hw.resize import Resize
    assert Resize.design(4, 4) == ("identity", 0)
    assert Resize.design(1, 3) == ("widen", 5) and Resize.design(6, 3) == ("narrow", 6)
    assert Resize.design(8, 9) == ("ring", 72) and Resize.design(40, 3) == ("shift", 45)
    r = Resize(in_lanes=40, out_lanes=3, channels=120)
    assert (r.ring, r.widen, r.narrow, r.identity, r.cap_lanes) == (False, False, False, False, 45)


def test_kxk_simd_may_divide_the_vector():
    model = small_model()
    st = {s.name: s for s in stages(model)}
    e3 = next(s for s in st.values() if s.name.endswith("expand3x3"))
    assert e3.in_ch == 4 and 12 in e3.simd_choices() and 36 in e3.simd_choices()
    # the window at one tap per beat can limit the stage: 9 beats per output pixel
    assert e3.cycles(36, e3.out_ch) == e3.out_pixels * 9
    base = auto_fold(model, max_multipliers=40, speed_slack=0).layers
    Folding({**base, e3.name: LayerFold(12, 1)}).validate(model)
    with pytest.raises(FoldingFileError, match="does not divide its 36 inputs per output pixel"):
        Folding({**base, e3.name: LayerFold(5, 1)}).validate(model)


@pytest.mark.parametrize("budget", [12, 40, 150])
def test_speed_slack_trades_at_most_that_much_rate_for_efficiency(budget):
    model = small_model()
    fastest = auto_fold(model, max_multipliers=budget, speed_slack=0).summary(model)
    for slack in (0.02, 0.1, 0.3):
        s = auto_fold(model, max_multipliers=budget, speed_slack=slack).summary(model)
        assert s["multipliers"] <= budget
        assert s["expected_cycles_per_frame"] <= fastest["expected_cycles_per_frame"] * (1 + slack)
        assert s["expected_mac_efficiency"] >= fastest["expected_mac_efficiency"]


def test_speed_slack_must_be_a_fraction():
    with pytest.raises(UserError, match="speed slack"):
        auto_fold(small_model(), max_multipliers=40, speed_slack=1.5)
