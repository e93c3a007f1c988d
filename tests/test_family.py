"""FamilyConfig: the paper's metaparameters, presets equal to torchvision, JSON, validation."""
import dataclasses

import numpy as np
import pytest

from squeezehw.frontend import torch_models as tm
from squeezehw.frontend.family import SQUEEZENET1_0, SQUEEZENET1_1, FamilyConfig, build_network, to_torch
from squeezehw.frontend.importer import network_from_module
from squeezehw.frontend.ir import Fire, Head, MaxPool, NetworkError

SMALL = dict(name="small", base_e=16, incr_e=16, pct3x3=0.5, sr=0.25, freq=2, num_fire=4,
             conv1_channels=16, conv1_kernel=3, conv1_stride=1, conv1_padding=1, pool_after=(0, 2),
             input_size=20, in_channels=1, classes=5, mean=(0.5,), std=(0.25,))


def small(**kw):
    return FamilyConfig(**{**SMALL, **kw})


def test_fire_formula():
    cfg = FamilyConfig(**{**SMALL, "base_e": 24, "incr_e": 8, "pct3x3": 0.25, "sr": 0.5, "freq": 1,
                          "num_fire": 3})
    got = [(f.in_ch, f.squeeze, f.expand1x1, f.expand3x3) for f in cfg.fires()]
    # e = 24, 32, 40; e3 = round(0.25 e) = 6, 8, 10; s = round(0.5 e) = 12, 16, 20
    assert got == [(16, 12, 18, 6), (24, 16, 24, 8), (32, 20, 30, 10)]


def test_rounding_is_half_up():
    cfg = small(base_e=10, incr_e=0, pct3x3=0.25, sr=0.25, num_fire=1, pool_after=())
    f = cfg.fires()[0]           # 2.5 -> 3 (Python's round would give 2)
    assert (f.squeeze, f.expand3x3, f.expand1x1) == (3, 3, 7)


@pytest.mark.parametrize("cfg, module", [(SQUEEZENET1_0, tm.squeezenet1_0), (SQUEEZENET1_1, tm.squeezenet1_1)])
def test_presets_are_torchvision(cfg, module):
    net = build_network(cfg)
    imported = network_from_module(module(), name=cfg.name, input_size=224, mean=cfg.mean, std=cfg.std,
                                   resize=256)
    assert net == imported
    fam = to_torch(cfg).state_dict()
    ref = module().state_dict()
    assert list(fam) == list(ref)
    assert all(fam[k].shape == ref[k].shape for k in ref)


def test_preset_sizes_match_published_figures():
    n0, n1 = build_network(SQUEEZENET1_0), build_network(SQUEEZENET1_1)
    assert n0.param_count() == 1_248_424 and n1.param_count() == 1_235_496
    assert sum(n0.macs().values()) == 818_924_576 and sum(n1.macs().values()) == 349_151_936
    assert [l.name for l in n1.layers if isinstance(l, MaxPool)] == ["features.2", "features.5", "features.8"]
    assert [l.name for l in n0.layers if isinstance(l, MaxPool)] == ["features.2", "features.6", "features.11"]
    assert n1.shapes()[-2] == (512, 13, 13) and n0.shapes()[-2] == (512, 13, 13)
    assert isinstance(n1.layers[-1], Head) and n1.layers[-1].name == "classifier.1"


def test_paper_bypass_rules():
    simple = [f.bypass for f in SQUEEZENET1_0.replace(bypass="simple").fires()]
    complex_ = [f.bypass for f in SQUEEZENET1_0.replace(bypass="complex").fires()]
    # the paper: simple bypass around Fire3, 5, 7, 9 (0-based 1, 3, 5, 7); complex adds the rest
    assert simple == ["none", "simple"] * 4
    assert complex_ == ["complex", "simple"] * 4
    net = build_network(SQUEEZENET1_0.replace(bypass="complex"))
    fire = net.layers[2]
    assert isinstance(fire, Fire) and fire.convs[-1].name == "features.3.bypass"


def test_fire_bypass_override():
    cfg = small(bypass="complex", fire_bypass=("complex", "simple", "none", "none"))
    assert [f.bypass for f in cfg.fires()] == ["complex", "simple", "none", "none"]
    with pytest.raises(NetworkError, match=r"fire_bypass\[0\]='simple'.*16 != 16|fire_bypass"):
        small(conv1_channels=8, fire_bypass=("simple", "none", "none", "none"))
    with pytest.raises(NetworkError, match="4 modes"):
        small(fire_bypass=("none",))


def test_json_round_trip(tmp_path):
    cfg = small(bypass="complex", labels=tuple("abcde"), resize=24)
    assert FamilyConfig.from_json(cfg.to_json()) == cfg
    path = tmp_path / "m.json"
    cfg.save(path)
    assert FamilyConfig.load(path) == cfg
    assert FamilyConfig.load(path).pool_after == (0, 2)


def test_json_errors(tmp_path):
    with pytest.raises(NetworkError, match="unknown keys.*'bogus'"):
        FamilyConfig.from_dict({**SMALL, "bogus": 1})
    with pytest.raises(NetworkError, match=r"missing keys \['sr'\]"):
        FamilyConfig.from_dict({k: v for k, v in SMALL.items() if k != "sr"})
    with pytest.raises(NetworkError, match="not valid JSON"):
        FamilyConfig.from_json("{")
    with pytest.raises(NetworkError, match="format"):
        FamilyConfig.from_dict({**SMALL, "format": "other"})
    with pytest.raises(NetworkError, match="does not exist"):
        FamilyConfig.load(tmp_path / "nope.json")


@pytest.mark.parametrize("key, value, match", [
    ("base_e", 0, "base_e must be an integer >= 1, not 0"),
    ("base_e", 2.0, "base_e must be an integer"),
    ("num_fire", True, "num_fire"),
    ("pct3x3", 1.0, "pct3x3=1 leaves no 1x1"),
    ("pct3x3", 0, r"pct3x3 must be a number in \(0, 1\]"),
    ("sr", 1.5, "sr must be"),
    ("sr", 0.01, "squeeze=0 filters"),
    ("bypass", "fancy", "bypass must be one of"),
    ("pool_after", (0, 9), "pool_after entry 9"),
    ("pool_after", (2, 2), "lists a position twice"),
    ("mean", (0.1, 0.2), "mean must list 1 finite"),
    ("std", (0.0,), "std values must be positive"),
    ("conv1_padding", -1, "conv1_padding must be an integer >= 0"),
    ("input_size", 5, "does not fit|shrinks"),
    ("labels", ("a",), "1 labels for 5 classes"),
    ("resize", 10, "resize must be an integer >= 20"),
    ("name", "", "name must be a non-empty string"),
])
def test_invalid_values(key, value, match):
    with pytest.raises(NetworkError, match=match):
        small(**{key: value})


def test_keyword_only_and_frozen():
    with pytest.raises(TypeError):
        FamilyConfig(16, 16, 0.5, 0.25, 2, 4, 16, 3, 1, 1, (0,))
    with pytest.raises(dataclasses.FrozenInstanceError):
        SQUEEZENET1_1.base_e = 3


def test_build_network_with_weights_and_torch_agree():
    cfg = small(bypass="complex")
    module = to_torch(cfg)
    net = build_network(cfg, module.state_dict())
    imported = network_from_module(module, name=cfg.name, input_size=cfg.input_size, in_channels=1,
                                   mean=cfg.mean, std=cfg.std)
    assert net == imported
    for name, (w, b) in net.weights.items():
        np.testing.assert_array_equal(w, imported.weights[name][0])
        np.testing.assert_array_equal(b, imported.weights[name][1])
    with pytest.raises(NetworkError, match="missing keys"):
        build_network(cfg, {k: v for k, v in module.state_dict().items() if "squeeze" not in k})
