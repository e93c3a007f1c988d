"""Integer-model files: identical round trip; damaged or foreign files fail with ModelFileError."""
from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from test_quantize import random_images, random_network

from squeezehw.quant import golden
from squeezehw.quant.intmodel import IntModel, ModelFileError
from squeezehw.quant.quantize import quantize


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    net = random_network(seed=4)
    model = quantize(net, random_images(8, net), progress=False)
    path = tmp_path_factory.mktemp("m") / "tiny.npz"
    model.save(path)
    return net, model, path


def test_round_trip_identical(saved):
    net, model, path = saved
    back = IntModel.load(path)
    assert back.content_hash() == model.content_hash()
    x = random_images(6, net, seed=11)
    a, b = golden.run(model, x, trace=True), golden.run(back, x, trace=True)
    assert np.array_equal(a.logits, b.logits) and np.array_equal(a.classes, b.classes)
    for name in a.layers:
        assert np.array_equal(a.layers[name], b.layers[name]), name
    for name, (w, bias) in model.float_weights.items():
        assert np.array_equal(back.float_weights[name][0], w) and np.array_equal(back.float_weights[name][1], bias)
    assert back.info == model.info
    # saving the loaded model again gives the same content
    path2 = path.with_name("again.npz")
    back.save(path2)
    assert IntModel.load(path2).content_hash() == model.content_hash()


def test_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match="no such integer-model file"):
        IntModel.load(tmp_path / "nope.npz")


@pytest.mark.parametrize("cut", [0.1, 0.5, 0.9, 0.999])
def test_truncated(saved, tmp_path, cut):
    data = saved[2].read_bytes()
    p = tmp_path / "cut.npz"
    p.write_bytes(data[:int(len(data) * cut)])
    with pytest.raises(ModelFileError):
        IntModel.load(p)


@pytest.mark.parametrize("where", [0.2, 0.5, 0.8])
def test_flipped_bytes(saved, tmp_path, where):
    data = bytearray(saved[2].read_bytes())
    i = int(len(data) * where)
    for j in range(i, i + 8):
        data[j] ^= 0xFF
    p = tmp_path / "flip.npz"
    p.write_bytes(bytes(data))
    # a corrupt deflate stream raises zlib.error inside numpy; it must surface as ModelFileError
    with pytest.raises(ModelFileError):
        IntModel.load(p)


def test_not_a_model(tmp_path):
    p = tmp_path / "text.npz"
    p.write_text("hello")
    with pytest.raises(ModelFileError, match="not a readable"):
        IntModel.load(p)
    q = tmp_path / "other.npz"
    np.savez(q, a=np.zeros(3))
    with pytest.raises(ModelFileError):
        IntModel.load(q)


def _rewrite_meta(src, dst, change):
    with np.load(src) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays.pop("__meta__")))
    change(meta, arrays)
    np.savez_compressed(dst, __meta__=np.array(json.dumps(meta)), **arrays)


def test_wrong_format_and_version(saved, tmp_path):
    p = tmp_path / "fmt.npz"
    _rewrite_meta(saved[2], p, lambda m, a: m.update(format="something-else"))
    with pytest.raises(ModelFileError, match="format is"):
        IntModel.load(p)
    _rewrite_meta(saved[2], p, lambda m, a: m.update(version=99))
    with pytest.raises(ModelFileError, match="version 99"):
        IntModel.load(p)


def test_edited_content_detected(saved, tmp_path):
    p = tmp_path / "edit.npz"

    def bump(meta, arrays):
        k = next(k for k in arrays if k.endswith("/weight") and not k.startswith("float/"))
        arrays[k] = arrays[k].copy()
        arrays[k].flat[0] = arrays[k].flat[0] // 2
    _rewrite_meta(saved[2], p, bump)
    with pytest.raises(ModelFileError, match="hash mismatch"):
        IntModel.load(p)

    def drop(meta, arrays):
        del arrays[next(k for k in arrays if k.endswith("/mult"))]
    _rewrite_meta(saved[2], p, drop)
    with pytest.raises(ModelFileError, match="incomplete"):
        IntModel.load(p)


def test_zip_member_missing_meta(saved, tmp_path):
    p = tmp_path / "nometa.npz"
    with zipfile.ZipFile(saved[2]) as src, zipfile.ZipFile(p, "w") as dst:
        for item in src.infolist():
            if item.filename != "__meta__.npy":
                dst.writestr(item, src.read(item.filename))
    with pytest.raises(ModelFileError):
        IntModel.load(p)
