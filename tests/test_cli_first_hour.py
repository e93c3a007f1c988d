"""Regression tests for issue 14, "a user's first hour": every case a new user hit that lost data,
printed a traceback, misled, or silently did the wrong thing.  In-process through
``squeezehw.cli.main``; small models, so the file runs in seconds (the default model is quantized
once and cached under build/)."""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_quantize import TINY, random_weights

from squeezehw.cli import main
from squeezehw.frontend.family import build_network
from squeezehw.frontend.images import load_images
from squeezehw.outputs import MANIFEST
from squeezehw.plan.folding import default_folding
from squeezehw.quant.intmodel import IntModel
from squeezehw.quant.random_model import random_model


def _one_error_line(err: str, *needles: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ": error: " in ln]
    assert len(errors) == 1, err
    assert "Traceback" not in err, err
    for n in needles:
        assert n in errors[0], errors[0]
    return errors[0]


def _snapshot(root: Path) -> dict:
    return {p.relative_to(root): (p.read_bytes() if p.is_file() else None) for p in root.rglob("*")}


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    d = tmp_path_factory.mktemp("hour")
    model = random_model(np.random.default_rng(3), size=12, classes=3)
    return model, model.save(d / "small.npz")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny family member: arch JSON, float weights (.npz), photos in ImageFolder layout."""
    d = tmp_path_factory.mktemp("tiny")
    arch = d / "tiny.json"
    TINY.save(arch)
    w = random_weights(build_network(TINY), seed=2)
    sd = {f"{k}.{part}": a for k, (wt, b) in w.items() for part, a in (("weight", wt), ("bias", b))}
    np.savez(d / "tiny.npz", **sd)
    rng = np.random.default_rng(0)
    photos = d / "photos"
    for c in range(2):
        (photos / f"class{c}").mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 256, size=(30, 28, 3), dtype=np.uint8)).save(
                photos / f"class{c}" / f"{i}.png")
    return d, arch, d / "tiny.npz", photos, sd


def _quantize(tiny, weights, out, *extra):
    d, arch, _, photos, _ = tiny
    return ["quantize", "--arch", str(arch), "--weights", str(weights), "--calib", str(photos),
            "--calib-count", "2", "-o", str(out), "--no-progress", *extra]


# --- 1. output folders: never delete what squeezehw did not write --------------------------------

def test_build_refuses_a_folder_with_other_files(small, tmp_path, capsys):
    _, p = small
    out = tmp_path / "p"
    out.mkdir()
    (out / "notes.txt").write_text("x\n")
    assert main(["build", str(p), "-o", str(out)]) == 2
    _one_error_line(capsys.readouterr().err, str(out), "did not write")
    assert (out / "notes.txt").read_text() == "x\n" and sorted(os.listdir(out)) == ["notes.txt"]
    assert sorted(os.listdir(tmp_path)) == ["p"]                 # no temporary sibling left


def test_build_refuses_the_current_folder(small, tmp_path, capsys, monkeypatch):
    _, p = small
    (tmp_path / "project.txt").write_text("mine\n")
    monkeypatch.chdir(tmp_path)
    before = _snapshot(tmp_path)
    assert main(["build", str(p), "-o", "."]) == 2
    _one_error_line(capsys.readouterr().err, "current folder")
    assert _snapshot(tmp_path) == before


def test_build_onto_an_existing_file(small, tmp_path, capsys):
    _, p = small
    f = tmp_path / "f"
    f.write_text("keep\n")
    assert main(["build", str(p), "-o", str(f)]) == 2
    _one_error_line(capsys.readouterr().err, "not a folder")
    assert f.read_text() == "keep\n"


def test_rebuild_replaces_a_previous_output_but_not_added_files(small, tmp_path, capsys):
    _, p = small
    out = tmp_path / "out"
    assert main(["build", str(p), "-o", str(out)]) == 0
    assert (out / MANIFEST).is_file() and "design.json" in json.loads((out / MANIFEST).read_text())["entries"]
    (out / "stale.txt").unlink(missing_ok=True)
    assert main(["build", str(p), "-o", str(out)]) == 0                   # a previous output: replaced
    (out / "notes.txt").write_text("mine\n")
    capsys.readouterr()
    assert main(["build", str(p), "-o", str(out)]) == 2                   # now it holds a user's file
    _one_error_line(capsys.readouterr().err, "notes.txt", "did not write")
    assert (out / "notes.txt").read_text() == "mine\n" and (out / "design.json").is_file()
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_an_empty_folder_is_used_and_added_reports_count_as_ours(small, tmp_path):
    from squeezehw.outputs import add_to_manifest, check_output_dir
    _, p = small
    out = tmp_path / "empty"
    out.mkdir()
    assert main(["build", str(p), "-o", str(out)]) == 0
    assert (out / "design.json").is_file()
    (out / "demo_report.json").write_text("{}\n")       # what `demo` adds after building
    add_to_manifest(out, "demo_report.json")
    (out / "synth-ulx3s-85f").mkdir()                   # what `synth` puts inside a build folder
    check_output_dir(out)                               # still a previous output: may be replaced


def test_demo_refuses_a_folder_with_other_files_before_any_work(tmp_path, capsys, monkeypatch):
    import squeezehw.pipeline as pipeline
    monkeypatch.setattr(pipeline, "default_int_model", lambda *a, **k: pytest.fail("did work first"))
    out = tmp_path / "p"
    out.mkdir()
    (out / "notes.txt").write_text("x\n")
    assert main(["demo", "-o", str(out)]) == 2
    _one_error_line(capsys.readouterr().err, "did not write")
    assert sorted(os.listdir(out)) == ["notes.txt"]


@pytest.mark.parametrize("umask", [0o022])      # the bug: 0600/0700 whatever the umask
def test_outputs_follow_the_umask(small, tiny, tmp_path, umask, capsys):
    _, p = small
    old = os.umask(umask)
    try:
        assert main(["build", str(p), "-o", str(tmp_path / "b")]) == 0
        assert main(["fold", str(p), "-o", str(tmp_path / "f.json")]) == 0
        assert main(_quantize(tiny, tiny[2], tmp_path / "q.npz")) == 0
    finally:
        os.umask(old)
    mode = lambda q: stat.S_IMODE(q.stat().st_mode)  # noqa: E731
    assert mode(tmp_path / "b") == 0o777 & ~umask
    assert mode(tmp_path / "b" / "mem") == 0o777 & ~umask
    for f in (tmp_path / "b" / "design.json", tmp_path / "f.json", tmp_path / "q.npz"):
        assert mode(f) == 0o666 & ~umask, f


# --- 3. 16-bit images ------------------------------------------------------------------------------

def test_16_bit_png_is_scaled_not_white(tmp_path):
    levels = np.arange(0, 256, dtype=np.uint16).reshape(16, 16)
    Image.fromarray(levels * 257).save(tmp_path / "s.png")          # 16-bit grey, 0..65535
    with Image.open(tmp_path / "s.png") as im:
        assert im.mode.startswith("I")
    x, kept, _ = load_images([tmp_path / "s.png"], height=16, width=16, channels=1, resize=None, progress=False)
    assert kept == [0] and np.array_equal(x[0, 0], levels.astype(np.uint8))
    rgb, _, _ = load_images([tmp_path / "s.png"], height=16, width=16, channels=3, resize=None, progress=False)
    assert np.array_equal(rgb[0, 1], levels.astype(np.uint8))


def test_run_board_reads_16_bit_png(tmp_path, capsys):
    from squeezehw.commands.run_board import load_image
    model = random_model(np.random.default_rng(1), size=12, classes=3)
    Image.fromarray(np.full((12, 12), 257 * 100, np.uint16)).save(tmp_path / "g.png")
    x, _ = load_image(model, str(tmp_path / "g.png"), None)
    assert (x == 100).all()


# --- 4. tracebacks ---------------------------------------------------------------------------------

def test_quantize_onto_a_folder_fails_before_calibrating(tiny, tmp_path, capsys, monkeypatch):
    import squeezehw.quant.quantize as qz
    monkeypatch.setattr(qz, "quantize", lambda *a, **k: pytest.fail("calibrated first"))
    d = tmp_path / "dir"
    d.mkdir()
    assert main(_quantize(tiny, tiny[2], d)) == 2
    _one_error_line(capsys.readouterr().err, "is a folder")
    assert main(_quantize(tiny, tiny[2], "/proc/nope/m.npz")) == 2
    _one_error_line(capsys.readouterr().err, "cannot write")


def test_unreadable_eval_photo_fails_before_calibrating(tiny, tmp_path, capsys, monkeypatch):
    # CI's property test found this: the error came after calibrating, under progress bars
    import squeezehw.quant.quantize as qz
    monkeypatch.setattr(qz, "quantize", lambda *a, **k: pytest.fail("calibrated first"))
    bad = tmp_path / "evalset" / "a"
    bad.mkdir(parents=True)
    (bad / "x.png").write_bytes(b"not a png")
    out = tmp_path / "m.npz"
    assert main(_quantize(tiny, tiny[2], out, "--eval-images", str(tmp_path / "evalset"))) == 2
    _one_error_line(capsys.readouterr().err, "x.png")
    assert not out.exists()


def test_read_only_folder_is_one_line_before_calibrating(tiny, tmp_path, capsys, monkeypatch):
    # the tests run as root, for whom chmod 0555 changes nothing: make the folder refuse writes
    import tempfile
    import types

    import squeezehw.outputs as outputs
    import squeezehw.quant.quantize as qz
    ro = tmp_path / "ro"
    ro.mkdir()

    def mkstemp(*a, dir=None, **k):
        if Path(dir) == ro:
            raise PermissionError(13, "Permission denied")
        return tempfile.mkstemp(*a, dir=dir, **k)
    monkeypatch.setattr(outputs, "tempfile", types.SimpleNamespace(mkstemp=mkstemp, mkdtemp=tempfile.mkdtemp))
    monkeypatch.setattr(qz, "quantize", lambda *a, **k: pytest.fail("calibrated first"))
    assert main(_quantize(tiny, tiny[2], ro / "m.npz")) == 2
    _one_error_line(capsys.readouterr().err, "cannot write in", "Permission denied")
    assert os.listdir(ro) == []


def test_fold_onto_a_folder_leaves_no_tmp(small, tmp_path, capsys):
    _, p = small
    d = tmp_path / "dir"
    d.mkdir()
    assert main(["fold", str(p), "-o", str(d)]) == 2
    _one_error_line(capsys.readouterr().err, "is a folder")
    assert sorted(os.listdir(tmp_path)) == ["dir"] and os.listdir(d) == []
    assert main(["fold", str(p), "-o", "/proc/f.json"]) == 2
    _one_error_line(capsys.readouterr().err, "cannot write")


def test_build_under_proc(small, capsys):
    _, p = small
    assert main(["build", str(p), "-o", "/proc/nope/out"]) == 2
    _one_error_line(capsys.readouterr().err, "cannot write")


def test_decompression_bomb_is_one_line_and_skippable(tmp_path, capsys, monkeypatch):
    from PIL import Image as PILImage
    m = random_model(np.random.default_rng(2), in_ch=3, size=12, classes=3)
    m.save(tmp_path / "m.npz")
    for c in ("a", "b"):
        (tmp_path / "photos" / c).mkdir(parents=True)
        Image.fromarray(np.zeros((12, 12, 3), np.uint8)).save(tmp_path / "photos" / c / "ok.png")
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "photos" / "b" / "huge.png")
    # 40x40 = 1,600 pixels is over twice this limit: Pillow refuses it as a decompression bomb,
    # exactly as it refuses a 14000x14000 PNG under its default limit
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 700)
    args = ["eval", str(tmp_path / "m.npz"), "--images", str(tmp_path / "photos"), "--no-progress"]
    assert main(args) == 2
    _one_error_line(capsys.readouterr().err, "huge.png", "too large", "--skip-unreadable")
    assert main(args + ["--skip-unreadable", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["skipped_unreadable"] == 1
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 1000)            # between 1x and 2x: a warning
    assert main(args) == 2
    _one_error_line(capsys.readouterr().err, "huge.png", "too large")


@pytest.mark.parametrize("argv, needle", [
    (["sim", "default", "--random", "-2"], "--random must be a positive"),
    (["sim", "default", "--random", "0"], "--random must be a positive"),
    (["sim", "default", "--limit", "0"], "--limit must be a positive"),
    (["fold", "default", "--fold", "auto", "--target-fps", "nan"], "--target-fps must be a positive number"),
    (["fold", "default", "--fold", "auto", "--target-fps", "100", "--clock", "nan"], "--clock must be a positive"),
    (["fold", "default", "--fold", "auto", "--target-fps", "inf"], "--target-fps must be a positive"),
])
def test_bad_numbers_are_one_line(argv, needle, capsys):
    assert main(argv) == 2
    _one_error_line(capsys.readouterr().err, needle)


# --- 5. quantize -o onto its own input --------------------------------------------------------------

def test_quantize_does_not_overwrite_its_weights_or_foreign_files(tiny, tmp_path, capsys):
    _, _, weights, _, _ = tiny
    w = tmp_path / "w.npz"
    w.write_bytes(weights.read_bytes())
    before = w.read_bytes()
    assert main(_quantize(tiny, w, w)) == 2
    _one_error_line(capsys.readouterr().err, "--weights file")
    assert w.read_bytes() == before
    other = tmp_path / "notes.npz"
    other.write_bytes(b"not a model")
    assert main(_quantize(tiny, w, other)) == 2
    _one_error_line(capsys.readouterr().err, "not a squeezehw integer model")
    assert other.read_bytes() == b"not a model"
    good = tmp_path / "q.npz"
    assert main(_quantize(tiny, w, good)) == 0
    assert main(_quantize(tiny, w, good)) == 0            # its own earlier output: replaced
    IntModel.load(good)


def test_fold_does_not_overwrite_foreign_files(small, tmp_path, capsys):
    _, p = small
    f = tmp_path / "notes.json"
    f.write_text('{"mine": 1}')
    assert main(["fold", str(p), "-o", str(f)]) == 2
    _one_error_line(capsys.readouterr().err, "not a squeezehw folding file")
    assert f.read_text() == '{"mine": 1}'


# --- 6. misleading messages --------------------------------------------------------------------------

def test_whole_module_saved_with_torch_save(tiny, tmp_path, capsys):
    from squeezehw.frontend.family import to_torch
    torch.save(to_torch(TINY), tmp_path / "whole.pth")
    assert main(_quantize(tiny, tmp_path / "whole.pth", tmp_path / "o.npz")) == 2
    line = _one_error_line(capsys.readouterr().err, "model.state_dict()", "torch.save(model)")
    assert "\x1b" not in line and "corrupt" not in line and not line.rstrip().endswith(",")


def test_a_resnet_state_dict_is_not_a_squeezenet(tiny, tmp_path, capsys):
    sd = {"conv1.weight": torch.zeros(64, 3, 7, 7), "bn1.weight": torch.ones(64),
          "bn1.num_batches_tracked": torch.tensor(0), "fc.weight": torch.zeros(1000, 512)}
    torch.save(sd, tmp_path / "resnet.pth")
    assert main(_quantize(tiny, tmp_path / "resnet.pth", tmp_path / "o.npz")) == 2
    line = _one_error_line(capsys.readouterr().err, "not a SqueezeNet-family")
    assert "dtype" not in line


def test_absurdly_scaled_weights_name_the_weights_not_calibration(tiny, tmp_path, capsys, recwarn):
    _, _, _, _, sd = tiny
    np.savez(tmp_path / "big.npz", **{k: v * np.float32(1e30) for k, v in sd.items()})
    assert main(_quantize(tiny, tmp_path / "big.npz", tmp_path / "o.npz")) == 2
    line = _one_error_line(capsys.readouterr().err, "big.npz", "magnitude")
    assert "calibrat" not in line
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_unreadable_image_hint_names_only_real_options(tiny, tmp_path, capsys):
    d, arch, weights, photos, _ = tiny
    bad = tmp_path / "photos"
    (bad / "a").mkdir(parents=True)
    (bad / "a" / "x.png").write_bytes(b"not a png")
    assert main(["quantize", "--arch", str(arch), "--weights", str(weights), "--calib", str(bad),
                 "-o", str(tmp_path / "o.npz"), "--no-progress"]) == 2
    line = _one_error_line(capsys.readouterr().err, "x.png")
    assert "skip" not in line
    m = random_model(np.random.default_rng(2), in_ch=3, size=12, classes=3)
    m.save(tmp_path / "m.npz")
    assert main(["sim", str(tmp_path / "m.npz"), "--images", str(bad)]) == 2
    assert "skip" not in _one_error_line(capsys.readouterr().err, "x.png")


# --- 7. inconsistent options ---------------------------------------------------------------------

def test_eval_takes_default(capsys):
    assert main(["eval", "default", "--limit", "20", "--json", "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out)["images"] == 20


@pytest.mark.parametrize("edit, needle", [
    (lambda d, k: d["layers"][k].update(pe=True), "pe is true"),
    (lambda d, k: d["layers"][k].update(pe="2"), 'pe is "2"'),
    (lambda d, k: d["layers"][k].update(simd=1.0), "simd is 1.0"),
    (lambda d, k: d["layers"][k].update(lanes=2), "is not {"),
    (lambda d, k: d.update(comment="x"), "unknown keys ['comment']"),
    (lambda d, k: d.update(model="some_other_model"), "made for model 'some_other_model'"),
])
def test_folding_file_is_validated(small, tmp_path, capsys, edit, needle):
    m, p = small
    d = json.loads(default_folding(m).to_json(m.name))
    edit(d, next(iter(d["layers"])))
    f = tmp_path / "fold.json"
    f.write_text(json.dumps(d))
    assert main(["build", str(p), "--fold", str(f), "-o", str(tmp_path / "out")]) == 2
    _one_error_line(capsys.readouterr().err, needle)
    assert not (tmp_path / "out").exists()


# --- 8. all-zero model -----------------------------------------------------------------------------

def test_all_zero_model_warns(tiny, tmp_path, capsys):
    _, _, _, _, sd = tiny
    np.savez(tmp_path / "zero.npz", **{k: np.zeros_like(v) for k, v in sd.items()})
    assert main(_quantize(tiny, tmp_path / "zero.npz", tmp_path / "z.npz")) == 0
    err = capsys.readouterr().err
    assert "warning: every weight of tiny is zero" in err
