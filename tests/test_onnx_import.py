"""ONNX in (issue 14): graphs written by ``torch.onnx.export`` for torchvision-layout SqueezeNet 1.0/1.1
and for family members with simple and complex bypass import to exactly the float IR of the PyTorch
path (same layers, names and float32 weights), and the IR's float logits agree with onnxruntime
running the ONNX file.  Unsupported operators and patterns are errors naming the node and op type.
"""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from squeezehw.cli import main
from squeezehw.frontend.family import SQUEEZENET1_0, SQUEEZENET1_1, FamilyConfig, to_torch
from squeezehw.frontend.float_model import forward, normalize
from squeezehw.frontend.importer import network_from_module
from squeezehw.frontend.ir import NetworkError
from squeezehw.frontend.onnx_import import load_onnx

onnx = pytest.importorskip("onnx", reason="the onnx package is not installed (pip install onnx)")

BYPASS = FamilyConfig(name="bypassnet", base_e=16, incr_e=16, pct3x3=0.5, sr=0.25, freq=2, num_fire=4,
                      conv1_channels=16, conv1_kernel=3, conv1_stride=2, conv1_padding=0, pool_after=(0, 2),
                      bypass="complex", input_size=33, in_channels=3, classes=7, resize=40)


def _export(module, config, path):
    module.eval()
    x = torch.zeros(1, config.in_channels, config.input_size, config.input_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")             # the legacy exporter's deprecation notice
        torch.onnx.export(module, x, str(path), dynamo=False, input_names=["pixels"], output_names=["logits"])
    return path


def _randomise(module, seed):
    """Trained-looking weights: random biases too (torchvision initialises them to zero, which the
    exporter would then share between convs)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.05 if p.ndim == 1 else (2.0 / p[0].numel()) ** 0.5))
    return module


CASES = {
    "squeezenet1_0": (SQUEEZENET1_0.replace(classes=10, labels=None), 0),
    "squeezenet1_1": (SQUEEZENET1_1.replace(classes=10, labels=None), 1),
    "family simple+complex bypass": (BYPASS, 2),
    "family, zero biases shared by the exporter": (BYPASS.replace(bypass="simple"), None),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_onnx_gives_the_pytorch_ir_and_onnxruntime_logits(case, tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (dev extra)")
    config, seed = CASES[case]
    torch.manual_seed(0)
    module = to_torch(config)
    if seed is not None:
        _randomise(module, seed)
    path = _export(module, config, tmp_path / "m.onnx")
    want = network_from_module(module, name=config.name, input_size=config.input_size,
                               in_channels=config.in_channels, mean=config.mean, std=config.std,
                               resize=config.resize)
    got = load_onnx(path, like=config)
    assert got.layers == want.layers and got.name == want.name
    assert (got.mean, got.std, got.resize) == (want.mean, want.std, want.resize)
    if "bypass" in case:
        assert {getattr(la, "bypass", None) for la in got.layers} >= {"simple", "complex"} or config.bypass == "simple"
    assert sorted(got.weights) == sorted(want.weights)
    for k, (w, b) in want.weights.items():
        assert np.array_equal(got.weights[k][0], w) and np.array_equal(got.weights[k][1], b), k
    # without --arch the layers and weights are the same, named from the weight tensors
    plain = load_onnx(path)
    assert plain.layers == want.layers and plain.name == "m"
    # the float IR against onnxruntime on the ONNX file itself
    pixels = np.random.default_rng(5).integers(0, 256, size=(2, config.in_channels, config.input_size,
                                                             config.input_size), dtype=np.uint8)
    ours, _ = forward(got, pixels)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    theirs = np.concatenate([sess.run(None, {"pixels": normalize(got, pixels[i:i + 1])})[0] for i in range(2)])
    diff = float(np.abs(ours - theirs).max())
    scale = float(np.abs(theirs).max())
    print(f"{case}: max |logit difference| IR float vs onnxruntime = {diff:.3g} (largest logit {scale:.3g})")
    assert scale > 0 and diff <= 1e-4 * max(1.0, scale)


@pytest.fixture(scope="module")
def small_onnx(tmp_path_factory):
    d = tmp_path_factory.mktemp("onnx")
    torch.manual_seed(0)
    module = _randomise(to_torch(BYPASS), 3)
    return _export(module, BYPASS, d / "small.onnx"), module


def _edited(src, tmp_path, edit):
    m = onnx.load(str(src))
    edit(m.graph)
    p = tmp_path / "edited.onnx"
    onnx.save(m, str(p))
    return p


def _node(graph, op, k=0):
    return [n for n in graph.node if n.op_type == op][k]


@pytest.mark.parametrize("edit, node_op", [
    (lambda g: setattr(_node(g, "Relu", 1), "op_type", "Sigmoid"), "Sigmoid"),
    (lambda g: setattr(_node(g, "MaxPool"), "op_type", "AveragePool"), "AveragePool"),
    (lambda g: [a for a in _node(g, "MaxPool").attribute if a.name == "ceil_mode"][0].__setattr__("i", 0), "MaxPool"),
    (lambda g: setattr(_node(g, "Concat"), "op_type", "Sum"), "Sum"),
    (lambda g: setattr(_node(g, "GlobalAveragePool"), "op_type", "GlobalMaxPool"), "GlobalMaxPool"),
])
def test_unsupported_operator_names_node_and_op(small_onnx, tmp_path, edit, node_op):
    path = _edited(small_onnx[0], tmp_path, edit)
    with pytest.raises(NetworkError, match=rf"ONNX node '[^']+' \({node_op}\)"):
        load_onnx(path)


def test_an_extra_output_op_is_refused(small_onnx, tmp_path):
    def softmax(g):
        out = g.output[0].name
        g.node.append(onnx.helper.make_node("Softmax", [out], ["probs"], name="final_softmax"))
        g.output[0].name = "probs"
    with pytest.raises(NetworkError, match=r"'final_softmax' \(Softmax\)"):
        load_onnx(_edited(small_onnx[0], tmp_path, softmax))


def test_arch_that_does_not_match_the_graph(small_onnx):
    with pytest.raises(NetworkError, match=r"layer 2 is Fire\(name='features.3'.*bypass='simple'\), but "
                                           r"bypassnet has Fire\(.*bypass='none'\).*drop --arch"):
        load_onnx(small_onnx[0], like=BYPASS.replace(bypass="none"))
    with pytest.raises(NetworkError, match="takes 3x33x33 images, squeezenet1_1 3x224x224"):
        load_onnx(small_onnx[0], like=SQUEEZENET1_1)


def test_quantize_cli_with_onnx_equals_the_npz_path(small_onnx, tmp_path, capsys):
    from PIL import Image

    from squeezehw.quant.intmodel import IntModel
    path, module = small_onnx
    np.savez(tmp_path / "w.npz", **{k: v.numpy() for k, v in module.state_dict().items()})
    BYPASS.save(tmp_path / "arch.json")
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (tmp_path / "photos" / c).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 256, (40, 44, 3), dtype=np.uint8)).save(tmp_path / "photos" / c / f"{i}.png")
    common = ["--calib", str(tmp_path / "photos"), "--no-progress", "--json"]
    assert main(["quantize", "--arch", str(tmp_path / "arch.json"), "--weights", str(path),
                 "-o", str(tmp_path / "a.npz"), *common]) == 0
    assert main(["quantize", "--arch", str(tmp_path / "arch.json"), "--weights", str(tmp_path / "w.npz"),
                 "-o", str(tmp_path / "b.npz"), *common]) == 0
    a, b = IntModel.load(tmp_path / "a.npz"), IntModel.load(tmp_path / "b.npz")
    assert [c.name for c in a.convs()] == [c.name for c in b.convs()]
    for ca, cb in zip(a.convs(), b.convs()):
        assert np.array_equal(ca.weight, cb.weight) and np.array_equal(ca.bias, cb.bias), ca.name
        assert np.array_equal(ca.mult, cb.mult) and np.array_equal(ca.shift, cb.shift), ca.name
    # without --arch: the ONNX file alone
    capsys.readouterr()
    assert main(["quantize", "--weights", str(path), "-o", str(tmp_path / "c.npz"), *common]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "small"


def test_unreadable_onnx_is_one_line(tmp_path, capsys):
    (tmp_path / "bad.onnx").write_bytes(b"\x08\x07 not protobuf at all")
    (tmp_path / "p" / "a").mkdir(parents=True)
    assert main(["quantize", "--weights", str(tmp_path / "bad.onnx"), "--calib", str(tmp_path / "p"),
                 "-o", str(tmp_path / "o.npz")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.onnx" in err and "Traceback" not in err
