"""The built-in default model: committed config + weights load, shapes match, accuracy is real."""
import numpy as np
import pytest
import torch

from squeezehw.errors import UserError
from squeezehw.frontend import float_model
from squeezehw.frontend.family import FamilyConfig, build_network, to_torch
from squeezehw.frontend.importer import load_state_dict
from squeezehw.frontend.ir import Conv, Fire, Head, MaxPool
from squeezehw.quant import default_model as dm


def test_config_is_the_documented_architecture():
    cfg = dm.default_config()
    assert isinstance(cfg, FamilyConfig)
    net = build_network(cfg)
    assert (net.in_ch, net.height, net.width, net.classes) == (1, 28, 28, 10)
    assert net.mean == (0.0,) and net.std == (1.0,) and net.resize is None
    assert [type(l) for l in net.layers] == [Conv, MaxPool, Fire, Fire, MaxPool, Fire, Head]
    fires = [l for l in net.layers if isinstance(l, Fire)]
    assert [(f.in_ch, f.squeeze, f.expand1x1, f.expand3x3, f.bypass) for f in fires] == [
        (16, 8, 16, 16, "complex"), (32, 8, 16, 16, "simple"), (32, 16, 32, 32, "none")]
    conv1 = net.layers[0]
    assert (conv1.out_ch, conv1.kernel, conv1.stride, conv1.padding) == (16, 3, 1, 0)
    assert [s for s in net.shapes()] == [(16, 26, 26), (16, 13, 13), (32, 13, 13), (32, 13, 13),
                                         (32, 6, 6), (64, 6, 6), (10, 1, 1)]


def test_weights_load_and_match_shapes():
    net = dm.load_default_network()
    assert set(net.weights) == {c.name for c in net.convs()}
    for conv in net.convs():
        w, b = net.weights[conv.name]
        assert w.shape == conv.weight_shape and b.shape == (conv.out_ch,) and w.dtype == np.float32
    # the committed file loads into the PyTorch module strictly, too
    sd = load_state_dict(dm.DEFAULT_WEIGHTS_PATH)
    to_torch(dm.default_config()).load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})


def test_split_is_fixed_and_stratified():
    tx, ty, vx, vy = dm.mnist_split()
    assert tx.shape == (4000, 1, 28, 28) and vx.shape == (1000, 1, 28, 28)
    assert tx.dtype == np.uint8 and ty.dtype == np.int64
    assert np.bincount(vy).tolist() == [100] * 10 and np.bincount(ty).tolist() == [400] * 10
    again = dm.mnist_split()
    for a, b in zip((tx, ty, vx, vy), again):
        np.testing.assert_array_equal(a, b)
    # no held-out digit appears among the training digits
    train_set = {img.tobytes() for img in tx}
    assert not any(img.tobytes() in train_set for img in vx)
    x, y = dm.default_eval_images(8)
    np.testing.assert_array_equal(x, vx[:8])
    np.testing.assert_array_equal(y, vy[:8])
    with pytest.raises(UserError, match="n must be an integer in 1..1000"):
        dm.default_eval_images(0)


def test_held_out_float_accuracy():
    net = dm.load_default_network()
    _, _, vx, vy = dm.mnist_split()
    logits, _ = float_model.forward(net, vx, batch_size=500)
    acc = float((logits.argmax(1) == vy).mean())
    print(f"default model held-out float accuracy: {acc:.4f} on {len(vy)} digits")
    assert acc >= 0.97
