"""PyTorch SqueezeNets: torchvision's exact layout and keys; the family's bypass Fires."""
from pathlib import Path

import numpy as np
import pytest
import torch

from squeezehw.frontend import torch_models as tm
from squeezehw.frontend.family import FamilyConfig
from squeezehw.frontend.ir import NetworkError

IMAGENET = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "imagenet"


def test_squeezenet1_1_keys_and_shapes():
    sd = tm.squeezenet1_1().state_dict()
    assert len(sd) == 52
    assert sum(v.numel() for v in sd.values()) == 1_235_496
    assert sd["features.0.weight"].shape == (64, 3, 3, 3)
    assert sd["features.3.squeeze.weight"].shape == (16, 64, 1, 1)
    assert sd["features.12.expand3x3.weight"].shape == (256, 64, 3, 3)
    assert sd["classifier.1.weight"].shape == (1000, 512, 1, 1)


def test_squeezenet1_0_keys_and_shapes():
    m = tm.squeezenet1_0(num_classes=10)
    sd = m.state_dict()
    assert sum(v.numel() for v in tm.squeezenet1_0().state_dict().values()) == 1_248_424
    assert sd["features.0.weight"].shape == (96, 3, 7, 7)
    assert sd["features.12.expand1x1.weight"].shape == (256, 64, 1, 1)
    assert sd["classifier.1.weight"].shape == (10, 512, 1, 1)
    assert [type(x).__name__ for x in m.features] == [
        "Conv2d", "ReLU", "MaxPool2d", "Fire", "Fire", "Fire", "MaxPool2d",
        "Fire", "Fire", "Fire", "Fire", "MaxPool2d", "Fire"]
    assert [type(x).__name__ for x in m.classifier] == ["Dropout", "Conv2d", "ReLU", "AdaptiveAvgPool2d"]
    pool = m.features[2]
    assert (pool.kernel_size, pool.stride, pool.ceil_mode) == (3, 2, True)


def test_forward_shape_and_flatten():
    m = tm.squeezenet1_1(num_classes=7).eval()
    with torch.no_grad():
        assert m(torch.zeros(2, 3, 64, 64)).shape == (2, 7)


def test_real_weights_load_strict():
    path = IMAGENET / "squeezenet1_1.npz"
    if not path.exists():
        pytest.skip(f"real ImageNet weights not found at {path}")
    with np.load(path) as z:
        sd = {k: torch.from_numpy(z[k]) for k in z.files}
    tm.squeezenet1_1().load_state_dict(sd, strict=True)


def test_bypass_fire_simple_and_complex():
    torch.manual_seed(0)
    x = torch.randn(2, 8, 5, 5)
    simple = tm.BypassFire(8, 4, 4, 4, bypass_mode="simple").eval()
    plain = tm.Fire(8, 4, 4, 4)
    plain.load_state_dict(simple.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(simple(x), torch.relu(plain(x) + x))
    cx = tm.BypassFire(8, 4, 6, 6, bypass_mode="complex").eval()
    assert cx.bypass.weight.shape == (12, 8, 1, 1) and cx.bypass_mode == "complex"
    plain = tm.Fire(8, 4, 6, 6)
    plain.load_state_dict({k: v for k, v in cx.state_dict().items() if not k.startswith("bypass")})
    with torch.no_grad():
        torch.testing.assert_close(cx(x), torch.relu(plain(x) + cx.bypass(x)))


def test_bypass_fire_errors():
    with pytest.raises(NetworkError, match="simple bypass needs in == out channels \\(8 != 12\\)"):
        tm.BypassFire(8, 4, 6, 6, bypass_mode="simple")
    with pytest.raises(NetworkError, match="bypass_mode must be"):
        tm.BypassFire(8, 4, 4, 4, bypass_mode="none")
    with pytest.raises(NetworkError, match="version must be"):
        tm.SqueezeNet("2_0")
    with pytest.raises(NetworkError, match="num_classes"):
        tm.squeezenet1_1(num_classes=0)
    with pytest.raises(NetworkError, match="needs a FamilyConfig"):
        tm.FamilyNet({"base_e": 1})


def test_family_net_layout():
    cfg = FamilyConfig(name="t", base_e=16, incr_e=16, pct3x3=0.5, sr=0.25, freq=2, num_fire=3,
                       conv1_channels=8, conv1_kernel=3, conv1_stride=1, conv1_padding=0,
                       pool_after=(0, 2), bypass="complex", input_size=16, in_channels=1, classes=4,
                       mean=(0.0,), std=(1.0,))
    m = tm.FamilyNet(cfg).eval()
    assert [type(x).__name__ for x in m.features] == [
        "Conv2d", "ReLU", "MaxPool2d", "BypassFire", "BypassFire", "MaxPool2d", "BypassFire"]
    assert [f.bypass_mode for f in m.features if isinstance(f, tm.BypassFire)] == ["complex", "simple", "complex"]
    assert "features.3.bypass.weight" in m.state_dict() and "features.4.bypass.weight" not in m.state_dict()
    with torch.no_grad():
        assert m(torch.zeros(3, 1, 16, 16)).shape == (3, 4)
