"""Float model of the IR == the PyTorch module on the same weights; trace naming = golden.run's."""
from pathlib import Path

import numpy as np
import pytest
import torch

from squeezehw.frontend import float_model
from squeezehw.frontend import torch_models as tm
from squeezehw.frontend.family import SQUEEZENET1_1, FamilyConfig, to_torch
from squeezehw.frontend.importer import load_network, network_from_module
from squeezehw.frontend.ir import Fire, NetworkError

IMAGENET = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "imagenet"
REL_TOL = 1e-4


def _liven(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Random weights that keep every layer's activations alive (torchvision's init zeroes biases
    and shrinks the head, which would make a comparison of near-zero logits meaningless)."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, torch.nn.Conv2d):
            fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
            with torch.no_grad():
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
                m.bias.copy_(torch.rand(m.bias.shape, generator=g) * 0.2 - 0.05)
    return module.eval()


def _compare(module, net, pixels):
    x = torch.from_numpy(float_model.normalize(net, pixels))
    with torch.no_grad():
        ref = module(x).numpy()
    got, _ = float_model.forward(net, pixels, batch_size=2)
    scale = np.abs(ref).max()
    assert scale > 1e-3, "logits are all ~0: the comparison would prove nothing"
    diff = np.abs(got - ref).max()
    print(f"{net.name}: max |logit diff| {diff:.3g}, max |logit| {scale:.3g}, relative {diff / scale:.3g}")
    assert diff / scale < REL_TOL
    return got


def _pixels(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


@pytest.mark.parametrize("factory", [tm.squeezenet1_0, tm.squeezenet1_1])
def test_matches_torchvision_layout_module(factory):
    m = _liven(factory(num_classes=20), seed=1)
    net = network_from_module(m, name=factory.__name__, input_size=64, mean=SQUEEZENET1_1.mean,
                              std=SQUEEZENET1_1.std)
    _compare(m, net, _pixels((3, 3, 64, 64)))


BYPASS = FamilyConfig(name="bypass", base_e=16, incr_e=16, pct3x3=0.5, sr=0.25, freq=2, num_fire=4,
                      conv1_channels=16, conv1_kernel=3, conv1_stride=1, conv1_padding=1,
                      pool_after=(0, 2), bypass="complex", input_size=20, in_channels=2, classes=6,
                      mean=(0.5, 0.25), std=(0.5, 2.0))


@pytest.mark.parametrize("bypass", ["simple", "complex"])
def test_matches_family_module_with_bypass(bypass):
    cfg = BYPASS.replace(bypass=bypass)
    m = _liven(to_torch(cfg), seed=2)
    net = load_network(cfg).with_weights(network_from_module(
        m, name=cfg.name, input_size=20, in_channels=2, mean=cfg.mean, std=cfg.std).weights)
    assert any(isinstance(l, Fire) and l.bypass == bypass for l in net.layers)
    _compare(m, net, _pixels((5, 2, 20, 20)))


def test_trace_keys_and_values():
    cfg = BYPASS.replace(fire_bypass=("complex", "simple", "none", "none"))
    m = _liven(to_torch(cfg), seed=3)
    net = network_from_module(m, name="t", input_size=20, in_channels=2, mean=cfg.mean, std=cfg.std)
    px = _pixels((3, 2, 20, 20))
    logits, tr = float_model.forward(net, px, trace=True, batch_size=2)
    expected = []
    for layer in net.layers:
        if isinstance(layer, Fire):
            expected += [f"{layer.name}.squeeze", f"{layer.name}.expand1x1", f"{layer.name}.expand3x3"]
            if layer.bypass != "none":
                expected.append(f"{layer.name}.concat")
            if layer.bypass == "complex":
                expected.append(f"{layer.name}.bypass")
        expected.append(layer.name)
    assert sorted(tr) == sorted(expected)
    for (c, h, w), layer in zip(net.shapes(), net.layers[:-1]):
        assert tr[layer.name].shape == (3, c, h, w) and tr[layer.name].dtype == np.float32
    head = tr["classifier.1"]
    assert head.shape == (3, 6, 5, 5) and head.min() >= 0
    np.testing.assert_allclose(head.mean(axis=(2, 3)), logits, rtol=1e-6)
    # the Fire output is relu(concat + bypass term); the bypass conv has no ReLU
    f = "features.3"
    np.testing.assert_allclose(tr[f], np.maximum(tr[f"{f}.concat"] + tr[f"{f}.bypass"], 0), rtol=1e-6)
    assert tr[f"{f}.bypass"].min() < 0
    np.testing.assert_array_equal(tr[f"{f}.concat"][:, :8], tr[f"{f}.expand1x1"])
    with torch.no_grad():
        x = torch.from_numpy(float_model.normalize(net, px))
        ref_conv1 = m.features[1](m.features[0](x)).numpy()
    np.testing.assert_allclose(tr["features.0"], ref_conv1, rtol=1e-5, atol=1e-6)
    _, none = float_model.forward(net, px)
    assert none == {}


def test_batching_does_not_change_results():
    m = _liven(to_torch(BYPASS), seed=4)
    net = network_from_module(m, name="t", input_size=20, in_channels=2, mean=BYPASS.mean, std=BYPASS.std)
    px = _pixels((7, 2, 20, 20))
    a, _ = float_model.forward(net, px, batch_size=3)
    b, _ = float_model.forward(net, px, batch_size=64)
    one, _ = float_model.forward(net, px[0])
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(one[0], b[0], rtol=1e-5, atol=1e-6)


def test_normalize():
    net = load_network(BYPASS)
    px = np.zeros((1, 2, 20, 20), np.uint8)
    px[:, 1] = 255
    x = float_model.normalize(net, px)
    assert x.dtype == np.float32
    np.testing.assert_allclose(x[0, 0, 0, 0], (0 - 0.5) / 0.5)
    np.testing.assert_allclose(x[0, 1, 0, 0], (1 - 0.25) / 2.0)


def test_errors():
    net = load_network(BYPASS)
    with pytest.raises(NetworkError, match="has no weights"):
        float_model.forward(net, _pixels((1, 2, 20, 20)))
    net = network_from_module(to_torch(BYPASS), name="t", input_size=20, in_channels=2,
                              mean=BYPASS.mean, std=BYPASS.std)
    with pytest.raises(TypeError, match="uint8"):
        float_model.forward(net, np.zeros((1, 2, 20, 20), np.float32))
    with pytest.raises(ValueError, match=r"expects \(N, 2, 20, 20\)"):
        float_model.forward(net, _pixels((1, 3, 20, 20)))
    with pytest.raises(ValueError, match="batch_size"):
        float_model.forward(net, _pixels((1, 2, 20, 20)), batch_size=0)


def _center_crop(path: Path, size: int = 224) -> np.ndarray:
    from PIL import Image
    img = Image.open(path).convert("RGB")      # sample photos are already resized to short side 256
    w, h = img.size
    left, top = (w - size) // 2, (h - size) // 2
    return np.asarray(img.crop((left, top, left + size, top + size)), dtype=np.uint8).transpose(2, 0, 1)


def test_real_squeezenet1_1_on_photographs():
    weights = IMAGENET / "squeezenet1_1.npz"
    if not weights.exists():
        pytest.skip(f"real ImageNet weights not found at {weights}")
    photos = sorted((IMAGENET / "sample").glob("*/*.jpg"))[:2]
    if len(photos) < 2:
        pytest.skip(f"sample photographs not found in {IMAGENET / 'sample'}")
    net = load_network("squeezenet1_1", weights)
    m = tm.squeezenet1_1().eval()
    with np.load(weights) as z:
        m.load_state_dict({k: torch.from_numpy(z[k]) for k in z.files})
    px = np.stack([_center_crop(p) for p in photos])
    logits = _compare(m, net, px)
    assert logits.shape == (2, 1000)
