"""Importer: PyTorch module -> IR, weight files -> IR, and every refusal names what is wrong."""
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from squeezehw.frontend import torch_models as tm
from squeezehw.frontend.family import SQUEEZENET1_1, FamilyConfig, build_network, to_torch
from squeezehw.frontend.importer import load_imagenet_labels, load_network, load_state_dict, network_from_module
from squeezehw.frontend.ir import Conv, Fire, Head, MaxPool, NetworkError

IMAGENET = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "imagenet"

TINY = FamilyConfig(name="tiny", base_e=8, incr_e=8, pct3x3=0.5, sr=0.5, freq=1, num_fire=2,
                    conv1_channels=8, conv1_kernel=3, conv1_stride=1, conv1_padding=0, pool_after=(0,),
                    bypass="complex", input_size=12, in_channels=1, classes=3, mean=(0.0,), std=(1.0,))


def imp(module, **kw):
    args = dict(name="m", input_size=32, in_channels=3, mean=(0, 0, 0), std=(1, 1, 1))
    return network_from_module(module, **{**args, **kw})


def test_import_squeezenet1_1_layers():
    m = tm.squeezenet1_1(num_classes=10)
    net = imp(m)
    kinds = [type(l) for l in net.layers]
    assert kinds == [Conv, MaxPool, Fire, Fire, MaxPool, Fire, Fire, MaxPool, Fire, Fire, Fire, Fire, Head]
    assert net.layers[2].name == "features.3" and net.layers[-1].name == "classifier.1"
    np.testing.assert_array_equal(net.weights["features.3.expand3x3"][0],
                                  m.features[3].expand3x3.weight.detach().numpy())
    assert net.weights["classifier.1"][0].dtype == np.float32


def test_import_family_with_bypass_equals_config():
    m = to_torch(TINY)
    net = network_from_module(m, name="tiny", input_size=12, in_channels=1, mean=(0,), std=(1,))
    assert net == build_network(TINY)
    assert [l.bypass for l in net.layers if isinstance(l, Fire)] == ["simple", "complex"]
    assert "features.4.bypass" in net.weights and "features.3.bypass" not in net.weights


def _replace(seq: nn.Sequential, i: int, mod: nn.Module) -> nn.Sequential:
    mods = list(seq)
    mods[i] = mod
    return nn.Sequential(*mods)


@pytest.mark.parametrize("where, make, match", [
    ("features", lambda f: _replace(f, 2, nn.AvgPool2d(3, 2)), r"features\.2 \(AvgPool2d\): unsupported layer"),
    ("features", lambda f: _replace(f, 1, nn.BatchNorm2d(64)),
     r"features\.0 \(Conv2d\): a Conv2d must be followed by ReLU"),
    ("features", lambda f: nn.Sequential(*list(f)[:3], nn.BatchNorm2d(64), *list(f)[3:]),
     r"features\.3 \(BatchNorm2d\): unsupported layer"),
    ("features", lambda f: _replace(f, 2, nn.MaxPool2d(3, 2)), r"features\.2 \(MaxPool2d\).*ceil_mode=False"),
    ("features", lambda f: _replace(f, 2, nn.MaxPool2d(2, 2, ceil_mode=True)), r"features\.2 \(MaxPool2d\)"),
    ("features", lambda f: _replace(f, 0, nn.Conv2d(3, 64, 3, 2, groups=1, bias=False)),
     r"features\.0 \(Conv2d\): bias=False"),
    ("features", lambda f: _replace(f, 0, nn.Conv2d(3, 64, 3, 2, dilation=2)), r"features\.0 \(Conv2d\): dilation"),
    ("features", lambda f: _replace(f, 0, nn.Conv2d(3, 63, 3, 2)), r"features\.3: expects 64 input channels"),
    ("features", lambda f: _replace(f, 1, nn.ReLU6()), r"features\.0 \(Conv2d\).*followed by ReLU"),
    ("features", lambda f: nn.Sequential(*list(f), nn.ReLU()), r"features\.13 \(ReLU\): unsupported"),
    ("classifier", lambda c: nn.Sequential(nn.Flatten(), nn.Linear(512, 10)), r"classifier\.0 \(Flatten\)"),
    ("classifier", lambda c: _replace(c, 3, nn.AdaptiveMaxPool2d(1)),
     r"classifier\.3 \(AdaptiveMaxPool2d\): the head must end in a global average pool"),
    ("classifier", lambda c: _replace(c, 1, nn.Conv2d(512, 10, 3, padding=1)),
     r"classifier\.1 \(Conv2d\): the head conv must be 1x1"),
    ("classifier", lambda c: _replace(c, 2, nn.Sigmoid()), r"classifier\.2 \(Sigmoid\)"),
])
def test_unsupported_layers_are_named(where, make, match):
    m = tm.squeezenet1_1(num_classes=10)
    setattr(m, where, make(getattr(m, where)))
    with pytest.raises(NetworkError, match=match) as e:
        imp(m)
    if "expects" not in match:
        assert "supported layers" in str(e.value)


def test_grouped_conv_and_odd_fire_refused():
    m = tm.squeezenet1_1(num_classes=10)
    m.features[3].expand3x3 = nn.Conv2d(16, 64, 3, padding=1, groups=2)
    with pytest.raises(NetworkError, match=r"features\.3\.expand3x3 \(Conv2d\): dilation=\(1, 1\) groups=2"):
        imp(m)
    m = tm.squeezenet1_1(num_classes=10)
    m.features[4].norm = nn.BatchNorm2d(128)
    with pytest.raises(NetworkError, match=r"features\.4 \(Fire\).*unexpected \['norm'\]"):
        imp(m)
    m = tm.squeezenet1_1(num_classes=10)
    m.features[4].squeeze_activation = nn.Sigmoid()
    with pytest.raises(NetworkError, match=r"features\.4\.squeeze_activation \(Sigmoid\)"):
        imp(m)


def test_not_a_squeezenet():
    with pytest.raises(NetworkError, match="has no 'features' Sequential"):
        imp(nn.Linear(3, 3))


# --- weight files ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_sd():
    torch.manual_seed(1)
    return to_torch(TINY).state_dict()


def test_load_npz_and_pth(tmp_path, tiny_sd):
    cfg_path = tmp_path / "tiny.json"
    TINY.save(cfg_path)
    npz = tmp_path / "w.npz"
    np.savez(npz, **{k: v.numpy() for k, v in tiny_sd.items()})
    ref = build_network(TINY, tiny_sd)
    variants = {"plain.pth": tiny_sd, "wrapped.pth": {"state_dict": tiny_sd, "epoch": 3},
                "model.pt": {"model": tiny_sd},
                "dp.pth": {f"module.{k}": v for k, v in tiny_sd.items()}}
    paths = [npz]
    for name, obj in variants.items():
        torch.save(obj, tmp_path / name)
        paths.append(tmp_path / name)
    for arch in (TINY, cfg_path, str(cfg_path)):
        for p in paths:
            net = load_network(arch, p)
            assert net == ref
            for k, (w, b) in ref.weights.items():
                np.testing.assert_array_equal(net.weights[k][0], w)
                np.testing.assert_array_equal(net.weights[k][1], b)
    assert load_network(TINY).weights == {}


def test_num_classes_from_weights(tmp_path):
    sd = tm.squeezenet1_1(num_classes=10).state_dict()
    torch.save(sd, tmp_path / "ft.pth")
    net = load_network("squeezenet1_1", tmp_path / "ft.pth")
    assert net.classes == 10
    assert load_network("squeezenet1_1", num_classes=10).classes == 10
    with pytest.raises(NetworkError, match=r"shape mismatches \[classifier\.1\.weight: \(10, 512, 1, 1\) "
                                           r"instead of \(1000, 512, 1, 1\)"):
        load_network("squeezenet1_1", tmp_path / "ft.pth", num_classes=1000)


def test_state_dict_mismatches(tmp_path, tiny_sd):
    sd = {k: v.numpy() for k, v in tiny_sd.items()}
    bad = dict(sd)
    del bad["features.3.squeeze.weight"]
    bad["features.3.extra.weight"] = np.zeros(3, np.float32)
    bad["features.4.expand3x3.weight"] = np.zeros((8, 4, 1, 1), np.float32)
    np.savez(tmp_path / "bad.npz", **bad)
    with pytest.raises(NetworkError) as e:
        load_network(TINY, tmp_path / "bad.npz")
    msg = str(e.value)
    assert "missing keys [features.3.squeeze.weight]" in msg
    assert "unexpected keys [features.3.extra.weight]" in msg
    assert "features.4.expand3x3.weight: (8, 4, 1, 1) instead of (8, 8, 3, 3)" in msg
    with pytest.raises(NetworkError, match=r"missing keys \[.*\.\.\. \(\d+ more\)\]"):
        load_network("squeezenet1_1", tmp_path / "bad.npz")


def test_corrupt_and_missing_files(tmp_path, tiny_sd):
    np.savez(tmp_path / "ok.npz", **{k: v.numpy() for k, v in tiny_sd.items()})
    data = (tmp_path / "ok.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(NetworkError, match="cut.npz is unreadable"):
        load_network(TINY, tmp_path / "cut.npz")
    torch.save(tiny_sd, tmp_path / "ok.pth")
    data = (tmp_path / "ok.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(NetworkError, match="cut.pth is unreadable"):
        load_network(TINY, tmp_path / "cut.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a torch file at all")
    with pytest.raises(NetworkError, match="junk.pth is unreadable"):
        load_network(TINY, tmp_path / "junk.pth")
    torch.save(to_torch(TINY), tmp_path / "whole.pth")      # a pickled module, not a state dict
    with pytest.raises(NetworkError, match=r"whole.pth holds a pickled Python object \(squeezehw.frontend.torch_models.FamilyNet.*model.state_dict\(\)"):
        load_network(TINY, tmp_path / "whole.pth")
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(NetworkError, match="holds a list, not a state dict"):
        load_network(TINY, tmp_path / "list.pth")
    with pytest.raises(NetworkError, match="nope.npz does not exist"):
        load_network(TINY, tmp_path / "nope.npz")
    (tmp_path / "w.h5").write_bytes(b"")
    with pytest.raises(NetworkError, match="unknown extension '.h5'"):
        load_state_dict(tmp_path / "w.h5")
    sd = {k: v.numpy() for k, v in to_torch(TINY).state_dict().items()}
    sd["features.0.bias"] = sd["features.0.bias"].astype(np.int64)
    np.savez(tmp_path / "ints.npz", **sd)
    with pytest.raises(NetworkError, match="features.0.bias has dtype int"):
        load_network(TINY, tmp_path / "ints.npz")


def test_unknown_arch(tmp_path):
    with pytest.raises(NetworkError, match="unknown architecture 'resnet50'"):
        load_network("resnet50")
    with pytest.raises(NetworkError, match="does not exist"):
        load_network(tmp_path / "missing.json")


def test_real_weights():
    if not (IMAGENET / "squeezenet1_1.npz").exists():
        pytest.skip(f"real ImageNet weights not found in {IMAGENET}")
    net = load_network("squeezenet1_1", IMAGENET / "squeezenet1_1.npz")
    assert net == build_network(SQUEEZENET1_1) and net.param_count() == 1_235_496
    net0 = load_network("squeezenet1_0", IMAGENET / "squeezenet1_0_deep_compression.npz")
    assert net0.param_count() == 1_248_424
    labels = load_imagenet_labels(IMAGENET / "classes.tsv")
    assert len(labels) == 1000 and labels[0] == "tench"


def test_labels_file(tmp_path):
    (tmp_path / "c.tsv").write_text("index\twnid\tname\n1\tn2\tcat\n0\tn1\tdog\n")
    assert load_imagenet_labels(tmp_path / "c.tsv") == ("dog", "cat")
    (tmp_path / "gap.tsv").write_text("0\tn1\tdog\n2\tn2\tcat\n")
    with pytest.raises(NetworkError, match="without gaps"):
        load_imagenet_labels(tmp_path / "gap.tsv")
    (tmp_path / "bad.tsv").write_text("0\tn1\n")
    with pytest.raises(NetworkError, match=r"bad.tsv:1: expected"):
        load_imagenet_labels(tmp_path / "bad.tsv")
    with pytest.raises(NetworkError, match="does not exist"):
        load_imagenet_labels(tmp_path / "none.tsv")
