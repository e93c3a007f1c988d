"""Shared-weight codebooks and sparse weight streams (squeezehw.quant.compression, docs/compression.md).

Small random models only; the Deep Compression v1.0 size figures need ../shared/data/imagenet and
skip without it."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from test_cli_quantize_eval import files as cli_files  # noqa: F401  (a fixture)
from test_cli_quantize_eval import quantize_args
from test_quantize import random_images, random_network

from squeezehw.cli import main
from squeezehw.plan.memory import memory_report
from squeezehw.quant import golden
from squeezehw.quant.compression import (
    CodebookSpec,
    CompressionError,
    EncodedLayer,
    check_codebook,
    codebook_weights,
    compression_summary,
    decode_layer,
    encode_layer,
    encoding_bits,
    gptq_round,
    kmeans_1d,
    layer_codebook,
    looks_deep_compressed,
    pack_weights_file,
    unpack_weights_file,
)
from squeezehw.quant.intmodel import IntModel
from squeezehw.quant.quantize import quantize

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet"


def deep_compressed(net, entries=16, density=0.4, seed=0):
    """A copy of ``net`` whose convs (but conv1) are pruned to ``density`` and share ``entries``
    values per layer, like a Deep Compression model; conv1 shares 4 values (the folded input
    normalisation makes them up to 12)."""
    rng = np.random.default_rng(seed)
    out = {}
    for i, (name, (w, b)) in enumerate(net.weights.items()):
        vals = np.linspace(-1, 1, entries if i else 5) * np.abs(w).max()
        vals = vals[vals != 0]
        w = vals[np.abs(w[..., None] - vals).argmin(-1)].astype(np.float32)
        if i:
            w[rng.random(w.shape) > density] = 0
        out[name] = (w, b)
    return net.with_weights(out)


@pytest.fixture(scope="module")
def net():
    return random_network(seed=3)


@pytest.fixture(scope="module")
def calib(net):
    return random_images(16, net, seed=5)


@pytest.fixture(scope="module")
def cluster_model(net, calib):
    return quantize(net, calib, progress=False, codebook=CodebookSpec(index_bits=4))


# --- k-means and GPTQ ---------------------------------------------------------------------------


def test_kmeans_uses_every_entry_and_gives_cluster_means():
    rng = np.random.default_rng(0)
    v = rng.standard_t(3, size=5000)              # heavy tails: linear init leaves empty clusters
    c = kmeans_1d(v, 32)
    assert len(c) == 32 and np.all(np.diff(c) > 0)
    idx = np.abs(v[:, None] - c[None]).argmin(1)
    assert len(np.unique(idx)) == 32
    means = np.array([v[idx == j].mean() for j in range(32)])
    assert np.allclose(means, c, atol=1e-3 * np.abs(v).max())
    assert np.array_equal(kmeans_1d(np.array([3.0, -1.0, 3.0]), 4), [-1.0, 3.0])


def test_gptq_rounding_lowers_the_layer_output_error_and_keeps_zeros():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(48, 4000))
    x[1::2] += 0.9 * x[::2]                       # correlated inputs: where GPTQ helps
    w = rng.normal(size=(20, 48))
    w[:, ::5] = 0
    book = np.append(kmeans_1d(w[w != 0], 7), 0.0)[None]
    h = x @ x.T / x.shape[1]
    errs = []
    for hess in (None, h):
        idx = gptq_round(w, hess, book, fixed_zero=w == 0)
        q = book[0][idx]
        assert np.all(q[w == 0] == 0)
        errs.append(np.linalg.norm((w - q) @ x))
    assert errs[1] < 0.95 * errs[0], errs


# --- codebooks ----------------------------------------------------------------------------------


def test_cluster_model_weights_are_codebook_values_and_reload_bit_exact(cluster_model, net, tmp_path):
    for q in cluster_model.convs():
        assert q.codebook is not None and q.index_bits == 4
        assert int(q.codebook_size.max()) <= 16
        check_codebook(q.name, q.weight, q.codebook, q.codebook_size, q.index_bits, q.encoding)
        assert q.w_bits == 12 and np.abs(q.weight).max() < 2 ** 11
    p = cluster_model.save(tmp_path / "cb.npz")
    back = IntModel.load(p)
    x = random_images(4, net, seed=9)
    assert np.array_equal(golden.run(back, x).logits, golden.run(cluster_model, x).logits)
    assert back.content_hash() == cluster_model.content_hash()


def test_per_channel_codebooks(net, calib):
    m = quantize(net, calib, progress=False,
                 codebook=CodebookSpec(index_bits=3, per_channel=True, refine="none"))
    for q in m.convs():
        assert q.codebook.shape[0] == q.out_ch and int(q.codebook_size.max()) <= 8
        for o in range(q.out_ch):                      # each channel draws on its own entries only
            assert np.isin(q.weight[o], q.codebook[o, :q.codebook_size[o]]).all()
        # one scale per channel: the channel's largest entry uses the full 12-bit range
        assert np.all(np.abs(q.codebook).max(1) == 2 ** 11 - 1)


def test_keep_mode_keeps_shared_values_and_pruned_zeros(net, calib):
    dc = deep_compressed(net, entries=16)
    assert looks_deep_compressed(dc.weights) and not looks_deep_compressed(net.weights)
    m = quantize(dc, calib, progress=False, codebook=CodebookSpec(index_bits=4, mode="keep"))
    for q in m.convs()[1:]:
        w = dc.weights[q.name][0]
        assert np.array_equal(q.weight == 0, w == 0)               # pruned zeros stay zero
        # the same float value always becomes the same integer and distinct values stay distinct
        pairs = np.unique(np.stack([w.ravel(), q.weight.ravel()]), axis=1)
        assert len(np.unique(pairs[0])) == len(np.unique(pairs[1])) == pairs.shape[1]
        assert np.allclose(q.weight * q.w_scale[:, None, None, None], w, atol=1e-4 * np.abs(w).max())
        assert q.encoding == "bitmap"                            # 40 % dense at 4 bits: 1 + 0.4*4 < 4
        assert q.stream_bits == q.weight.size + 4 * int((w != 0).sum())


def test_keep_mode_refuses_too_many_values_and_falls_back_per_channel(net):
    w = net.weights["features.3.expand3x3"][0]                     # 8 x 2 x 3 x 3 random floats
    with pytest.raises(CompressionError, match="distinct non-zero weight values, more than the 4"):
        codebook_weights("features.3.expand3x3", w, CodebookSpec(index_bits=2, mode="keep"))
    # 18 distinct values per output channel fit 32-entry per-channel codebooks, not one of 32
    q, scale, book, size, enc, info = codebook_weights("x", w, CodebookSpec(index_bits=5, mode="keep"))
    assert info["per_channel"] and book.shape[0] == w.shape[0] and int(size.max()) <= 18


def test_codebook_larger_than_index_bits_is_refused():
    w = np.arange(-8, 9).reshape(17, 1, 1, 1)
    book, size = layer_codebook(w, "dense-index", False)
    assert int(size[0]) == 17
    with pytest.raises(CompressionError, match="17 entries, more than 2\\*\\*4 = 16"):
        check_codebook("c", w, book, size, 4, "dense-index")
    with pytest.raises(CompressionError, match="more than"):
        encode_layer("c", w, book, size, 4, "dense-index")
    book, size = layer_codebook(w, "bitmap", False)                # zero is implicit: 16 entries
    check_codebook("c", w, book, size, 4, "bitmap")
    w2 = w.copy()
    w2[0] = 100                                                     # not a codebook value
    with pytest.raises(CompressionError, match="not in its codebook"):
        check_codebook("c", w2, book, size, 4, "bitmap")


# --- streams ------------------------------------------------------------------------------------


def test_bitmap_stream_bit_layout():
    # one output, 4 inputs (1x1 conv): weights [0, 5, 0, -3], codebook [-3, 5], k = 2, one word
    w = np.array([0, 5, 0, -3]).reshape(1, 4, 1, 1)
    book, size = layer_codebook(w, "bitmap", False)
    e = encode_layer("c", w, book, size, 2, "bitmap", pe=1, simd=4)
    # mask lanes 0..3 = 0,1,0,1; then index of 5 (1 -> bits 1,0), index of -3 (0 -> bits 0,0)
    bits = [0, 1, 0, 1, 1, 0, 0, 0]
    assert e.bits == 8 and e.data == bytes([sum(b << i for i, b in enumerate(bits))])
    d = encode_layer("c", w, *layer_codebook(w, "dense-index", False), 2, "dense-index", pe=1, simd=4)
    # codebook [-3, 0, 5]: indices 1, 2, 1, 0 -> bits 10 01 10 00 (LSB first)
    assert d.bits == 8 and d.data == bytes([0b00_01_10_01])


@pytest.mark.parametrize("encoding", ["dense-index", "bitmap"])
@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("pe,simd", [(1, 1), (2, 3), (6, 9)])
def test_stream_round_trip(encoding, per_channel, pe, simd):
    rng = np.random.default_rng(pe * 10 + simd)
    w = rng.choice(np.array([-900, -7, 3, 12, 2047, -2048]), size=(6, 3, 3, 3))
    w[rng.random(w.shape) < 0.6] = 0
    book, size = layer_codebook(w, encoding, per_channel)
    k = 3
    e = encode_layer("c", w, book, size, k, encoding, pe=pe, simd=simd)
    assert e.bits == encoding_bits(encoding, w.size, int((w != 0).sum()), k)
    assert len(e.data) == math.ceil(e.bits / 8)
    assert np.array_equal(decode_layer(e, w.shape, book, size), w)


def test_stream_that_does_not_match_its_layer_is_refused():
    rng = np.random.default_rng(2)
    w = rng.choice(np.array([-3, 0, 0, 4, 9]), size=(4, 6, 1, 1))
    for enc in ("dense-index", "bitmap"):
        book, size = layer_codebook(w, enc, False)
        e = encode_layer("c", w, book, size, 2, enc)
        with pytest.raises(CompressionError, match="c: "):
            decode_layer(e, (4, 5, 1, 1), book, size)              # a smaller layer
        with pytest.raises(CompressionError, match="c: "):
            decode_layer(e, (8, 6, 1, 1), book, size)              # a larger one
        short = EncodedLayer("c", enc, 2, e.bits - 8, e.data[:-1])
        with pytest.raises(CompressionError, match="c: "):
            decode_layer(short, w.shape, book, size)
        lying = EncodedLayer("c", enc, 2, e.bits + 20, e.data)
        with pytest.raises(CompressionError, match="holds"):
            decode_layer(lying, w.shape, book, size)


def test_weights_file_round_trip_and_damage(cluster_model):
    data = pack_weights_file(cluster_model)
    back = unpack_weights_file(data)
    for q in cluster_model.convs():
        assert np.array_equal(back[q.name], q.weight)
    with pytest.raises(CompressionError, match="damaged|magic"):
        unpack_weights_file(data[:len(data) // 2])
    with pytest.raises(CompressionError, match="magic"):
        unpack_weights_file(b"hello" + data)


def test_memory_report_counts_streams_codebooks_and_block_rams(cluster_model):
    rep = memory_report(cluster_model)
    comp = rep["compressed"]
    convs = cluster_model.convs()
    assert comp["stream_bits"] == sum(encoding_bits(q.encoding, q.weight.size,
                                                    int((q.weight != 0).sum()), 4) for q in convs)
    assert comp["codebook_bits"] == sum(int(q.codebook_size.sum()) * 12 for q in convs)
    assert rep["weight_bytes"] == sum(math.ceil(q.stream_bits / 8) + math.ceil(q.codebook_bits / 8)
                                      for q in convs)
    ecp5 = comp["block_rams"]["ulx3s-85f"]
    assert ecp5["cell"] == "DP16KD"
    assert ecp5["stream_blocks"] == sum(math.ceil(q.stream_bits / 18432) for q in convs)
    assert compression_summary(cluster_model)["stream_bits"] == comp["stream_bits"]


# --- file format --------------------------------------------------------------------------------


def test_version_1_files_still_load(net, calib, tmp_path):
    m = quantize(net, calib[:4], progress=False)
    p = m.save(tmp_path / "v2.npz")
    with np.load(p) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays.pop("__meta__")))
    meta["version"] = 1
    meta["sha256"] = m._content_hash_v1()
    old = tmp_path / "v1.npz"
    np.savez_compressed(old, __meta__=np.array(json.dumps(meta)), **arrays)
    assert IntModel.load(old).content_hash() == m.content_hash()


# --- command line -------------------------------------------------------------------------------


def test_cli_quantize_codebook_and_eval(cli_files, tmp_path, capsys):
    out, packed = tmp_path / "cb.npz", tmp_path / "cb.sqz"
    assert main(quantize_args(cli_files, out, "--codebook", "cluster", "--bits", "5",
                              "--weights-file", str(packed), "--json")) == 0
    rep = json.loads(capsys.readouterr().out)
    m = IntModel.load(out)
    assert all(q.index_bits == 5 for q in m.convs())
    assert rep["codebook_file_bytes"] == packed.stat().st_size
    assert rep["memory"]["compressed"]["stream_bytes"] == compression_summary(m)["stream_bytes"]
    assert main(["eval", str(out), "--images", str(cli_files[3]), "--json", "--no-progress"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert ev["compressed"]["stream_bits"] == rep["memory"]["compressed"]["stream_bits"]


def test_cli_keep_with_too_few_bits_writes_nothing(cli_files, tmp_path, capsys):
    out, packed = tmp_path / "no.npz", tmp_path / "no.sqz"
    assert main(quantize_args(cli_files, out, "--codebook", "keep", "--bits", "2",
                              "--weights-file", str(packed))) == 2
    err = capsys.readouterr().err
    assert "distinct non-zero weight values" in err and "Traceback" not in err
    assert not out.exists() and not packed.exists()
    assert main(quantize_args(cli_files, out, "--entry-bits", "12")) == 2     # needs --codebook
    assert "needs --codebook" in capsys.readouterr().err and not out.exists()


# --- Deep Compression v1.0 (needs ../shared/data/imagenet) -------------------------------------


@pytest.fixture(scope="module")
def dc_weights():
    f = DATA / "squeezenet1_0_deep_compression.npz"
    if not f.is_file():
        pytest.skip(f"needs {f} (the Deep Compression SqueezeNet v1.0 weights)")
    from squeezehw.frontend.importer import load_network
    from squeezehw.quant.quantize import _fold_input
    net = load_network("squeezenet1_0", f)
    w = {c.name: np.asarray(net.weights[c.name][0]) for c in net.convs()}
    w[net.convs()[0].name] = _fold_input(net, net.convs()[0])[0]      # what the quantizer sees
    return net, w


def _sizes(w, spec):
    stream = book = 0
    for name, wt in w.items():
        q, _, cb, size, enc, _ = codebook_weights(name, wt, spec)
        stream += encoding_bits(enc, q.size, int((q != 0).sum()), spec.index_bits)
        book += int(size.sum()) * spec.bits
    return (stream + 7) // 8, (book + 7) // 8


def test_deep_compression_v10_is_detected_and_kept_within_0_60_MB(dc_weights):
    net, w = dc_weights
    assert looks_deep_compressed(net.weights)
    stream, book = _sizes(w, CodebookSpec(index_bits=8, mode="keep"))
    assert stream + book <= 600_000, (stream, book)


def test_deep_compression_v10_at_6_bits_within_0_47_MB(dc_weights):
    _, w = dc_weights
    stream, book = _sizes(w, CodebookSpec(index_bits=6, mode="cluster", refine="none"))
    assert stream <= 470_000, (stream, book)


# --- the existing hardware runs codebook weights (entries wider than 8 bits) -------------------


def _codebook_model(rng):
    """A random model whose convs carry 12-bit codebooks of 12 entries, half the weights pruned."""
    from squeezehw.quant.intmodel import requant_params
    from squeezehw.quant.random_model import random_model
    model = random_model(rng, size=8, fires=((4, 8, 8, "complex"),), classes=4)
    for c in model.convs():
        entries = np.unique(rng.integers(-2047, 2048, size=12))
        c.weight = entries[rng.integers(0, len(entries), size=c.weight.shape)].astype(np.int16)
        c.weight[rng.random(c.weight.shape) < 0.5] = 0
        c.w_bits, c.index_bits, c.encoding = 12, 4, "bitmap"
        c.codebook, c.codebook_size = layer_codebook(c.weight, "bitmap", False)
        spread = np.sqrt(c.weight[0].size) * 2047 * 0.4 * 128
        c.bias = rng.integers(-int(spread), int(spread) + 1, size=c.out_ch).astype(np.int64)
        for o in range(c.out_ch):
            c.mult[o], c.shift[o] = requant_params(float(rng.uniform(0.5, 2.0)) * 128 / spread)
    assert max(c.acc_bits for c in model.convs()) > 20
    return model


def test_build_keeps_codebook_weights_compressed(tmp_path, capsys):
    """`squeezehw build` of a codebook model stores each conv's packed stream (the WeightDecoder's
    memory image) unless --weights dense; design.json says which, and the memory bits shrink."""
    from squeezehw.plan.folding import default_folding
    from squeezehw.quant.sparse_weights import model_weight_codes
    model = _codebook_model(np.random.default_rng(5))
    path = model.save(tmp_path / "cb.npz")
    assert main(["build", str(path), "-o", str(tmp_path / "c")]) == 0
    assert main(["build", str(path), "-o", str(tmp_path / "d"), "--weights", "dense"]) == 0
    capsys.readouterr()
    comp = json.loads((tmp_path / "c" / "design.json").read_text())
    dense = json.loads((tmp_path / "d" / "design.json").read_text())
    assert comp["config"]["weights"] == "auto" and dense["config"]["weights"] == "dense"
    codes = model_weight_codes(model, default_folding(model))
    rows = {r["layer"]: r for r in comp["layers"] if "weight_format" in r}
    assert set(rows) == {c.name for c in model.convs()} == set(codes)
    for name, code in codes.items():
        assert rows[name]["weight_format"] == "bitmap"
        assert rows[name]["weight_memory_bits"] == code.memory_bits
        image = (tmp_path / "c" / "mem" / f"{name}.hex").read_text().split()
        assert [int(w, 16) for w in image] == list(code.words)
    assert all(r["weight_format"] == "dense" for r in dense["layers"] if "weight_format" in r)
    assert sum(r["weight_memory_bits"] for r in rows.values()) < \
        sum(r["weight_memory_bits"] for r in dense["layers"] if "weight_memory_bits" in r)
    assert "weight_decoder" in (tmp_path / "c" / f"{comp['top']}.v").read_text()
    assert "weight_decoder" not in (tmp_path / "d" / f"{dense['top']}.v").read_text()


def test_codebook_model_is_bit_exact_in_verilator_through_its_weight_decoders(tmp_path, capsys):
    """`squeezehw sim` of a codebook model (12-bit entries, bitmap streams) runs every MVU behind
    its WeightDecoder, under random gaps and back-pressure, bit-exact against the golden model."""
    pytest.importorskip("cocotb")
    model = _codebook_model(np.random.default_rng(5))
    path = model.save(tmp_path / "cb.npz")
    assert main(["sim", str(path), "--random", "2", "--traffic", "rough", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["bit_exact"] and rep["frames"] == 2
