"""Property test of the command line's bad-input contract (issue 14): every subcommand, driven with
generated bad arguments and paths, exits with status 2, prints exactly one line on stderr naming the
problem, never a traceback, and changes no file (nothing new, nothing modified, nothing deleted).

Each example is one argv: a subcommand, valid or invalid positionals, zero or more valid options,
and at least one bad element (a bad number, a missing/unreadable/wrong-kind path, an output that
would destroy a file squeezehw did not write, an unknown name).  Every bad element is one squeezehw
must refuse before doing any real work, so examples take milliseconds; they run in-process through
``squeezehw.cli.main`` inside a scratch folder that is compared before and after.
"""
from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from test_quantize import TINY, random_weights

from squeezehw.cli import main
from squeezehw.frontend.family import build_network
from squeezehw.quant.random_model import random_model


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """The scratch folder: valid inputs, and files of every wrong kind."""
    d = tmp_path_factory.mktemp("props")
    random_model(np.random.default_rng(1), size=12, classes=3).save(d / "model.npz")
    TINY.save(d / "tiny.json")
    w = random_weights(build_network(TINY), seed=2)
    np.savez(d / "weights.npz", **{f"{k}.{p}": a for k, (wt, b) in w.items() for p, a in (("weight", wt), ("bias", b))})
    for c in ("a", "b"):
        (d / "photos" / c).mkdir(parents=True)
        Image.fromarray(np.zeros((28, 28, 3), np.uint8)).save(d / "photos" / c / "0.png")
    (d / "badphotos" / "a").mkdir(parents=True)
    (d / "badphotos" / "a" / "x.png").write_bytes(b"not a png")
    (d / "emptydir").mkdir()
    (d / "noclasses").mkdir()
    (d / "noclasses" / "readme.txt").write_text("no class folders\n")
    (d / "notes").mkdir()
    (d / "notes" / "notes.txt").write_text("mine\n")
    (d / "junk.npz").write_bytes(b"\x00junk" * 10)
    (d / "empty.npz").write_bytes(b"")
    (d / "trunc.npz").write_bytes((d / "model.npz").read_bytes()[:200])
    (d / "text.txt").write_text("hello\n")
    (d / "junk.json").write_text("{not json")
    (d / "list.json").write_text("[1, 2]")
    (d / "junk.onnx").write_bytes(b"\x08\x07garbage")
    (d / "junk.pth").write_bytes(b"not torch")
    (d / "image.png").write_bytes(b"\x89PNG but not really")
    return d


BAD_INT = st.sampled_from(["0", "-1", "-7"])
NOT_INT = st.sampled_from(["x", "1.5", "", "1e3", "nan"])
BAD_FLOAT = st.sampled_from(["nan", "inf", "-inf", "-1", "0"])
NOT_FLOAT = st.sampled_from(["x", "", "1,5"])
BAD_MODEL = st.sampled_from(["missing.npz", "junk.npz", "empty.npz", "trunc.npz", "text.txt", "weights.npz",
                             "emptydir", "notes", "/proc/nope.npz"])
BAD_IMAGES = st.sampled_from(["missing", "text.txt", "emptydir", "noclasses", "badphotos"])
BAD_FOLD = st.sampled_from(["missing.json", "junk.json", "list.json", "text.txt", "emptydir"])
BAD_OUT_DIR = st.sampled_from(["notes", "text.txt", ".", "/proc/nope/out", "notes/notes.txt/x"])
BAD_OUT_FILE = st.sampled_from(["notes", "emptydir", "text.txt", "junk.npz", "/proc/nope.json",
                                "text.txt/x.json"])
BAD_BOARD = st.sampled_from(["nope", "ulx3s-99f", ""])
BAD_ARCH = st.sampled_from(["resnet50", "missing.json", "junk.json", "list.json", "text.txt"])
BAD_WEIGHTS = st.sampled_from(["missing.pth", "junk.pth", "junk.npz", "empty.npz", "text.txt", "model.npz",
                               "junk.onnx", "emptydir"])

# (option, strategy of bad values) per command, and valid options that may be mixed in
FOLD_BAD = [("--max-multipliers", BAD_INT), ("--max-multipliers", NOT_INT), ("--target-fps", BAD_FLOAT),
            ("--clock", BAD_FLOAT), ("--clock", NOT_FLOAT), ("--speed-slack", st.sampled_from(["-1", "100", "nan"])),
            ("--fold", BAD_FOLD), ("--board", BAD_BOARD)]
FOLD_OK = [["--fold", "auto", "--max-multipliers", "200"], ["--clock", "50"], ["--json"], ["--fold", "default"]]
BAD = {
    "quantize": [("--bits", st.sampled_from(["0", "1", "9", "-1", "x"])), ("--calib-count", BAD_INT),
                 ("--percentile", st.sampled_from(["nan", "inf", "0", "-1", "101", "x"])),
                 ("--budget", BAD_INT), ("--board", BAD_BOARD), ("--eval-limit", BAD_INT),
                 ("--calib", BAD_IMAGES), ("--eval-images", BAD_IMAGES), ("-o", BAD_OUT_FILE),
                 ("--weights", BAD_WEIGHTS), ("--arch", BAD_ARCH),
                 ("--calibration", st.sampled_from(["mean", ""]))],
    "eval": [("--limit", BAD_INT), ("--batch-size", BAD_INT), ("--images", BAD_IMAGES), ("--limit", NOT_INT)],
    "fold": FOLD_BAD + [("-o", BAD_OUT_FILE)],
    "build": FOLD_BAD + [("-o", BAD_OUT_DIR), ("--dsp", st.sampled_from(["xilinx", ""]))],
    "sim": FOLD_BAD + [("--random", BAD_INT), ("--limit", BAD_INT), ("--images", BAD_IMAGES),
                       ("--traffic", st.sampled_from(["bumpy", ""])), ("--seed", NOT_INT)],
    "synth": [("--board", BAD_BOARD), ("--target-mhz", BAD_FLOAT), ("--seed", st.sampled_from(["-1", "x"]))],
    "run-board": [("--digit", st.sampled_from(["-1", "1000", "x"])), ("--baud", NOT_INT)],
    "demo": [("--frames", st.sampled_from(["0", "-1", "1001", "x"])), ("-o", BAD_OUT_DIR)],
}
OK = {
    "quantize": [["--bits", "6"], ["--calib-count", "2"], ["--json"], ["--no-progress"], ["--calibration", "max"]],
    "eval": [["--limit", "2"], ["--json"], ["--no-progress"]],
    "fold": FOLD_OK, "build": FOLD_OK + [["--dsp", "ecp5"]],
    "sim": FOLD_OK + [["--traffic", "rough"], ["--seed", "3"]],
    "synth": [["--json"], ["--no-progress"]],
    "run-board": [["--json"], ["--timeout", "1"]],
    "demo": [["--json"]],
}
GOOD_MODELS = st.sampled_from(["model.npz", "default"])


@st.composite
def bad_argv(draw):
    cmd = draw(st.sampled_from(sorted(BAD)))
    bads = draw(st.lists(st.sampled_from(BAD[cmd]), min_size=0, max_size=2))
    bad_model = not bads or draw(st.booleans())
    argv = [cmd]
    if cmd in ("eval", "fold", "build", "sim", "run-board"):
        argv.append(draw(BAD_MODEL) if bad_model else draw(GOOD_MODELS))
        if cmd == "run-board":
            argv += [draw(st.sampled_from(["image.png", "missing.png", "emptydir", "text.txt"])), "--port", "emulate"]
    elif cmd == "synth":
        argv.append(draw(st.sampled_from(["missing", "emptydir", "text.txt", "model.npz", "notes"]))
                    if bad_model else "emptydir")
        argv += ["--board", "ulx3s-85f"] if not any(o == "--board" for o, _ in bads) else []
    elif cmd == "quantize":
        if bad_model or not any(o in ("--weights", "--arch") for o, _ in bads):
            argv += ["--arch", "tiny.json", "--weights", draw(BAD_WEIGHTS) if bad_model else "weights.npz"]
        if not any(o == "--calib" for o, _ in bads):
            argv += ["--calib", "photos"]
    elif cmd == "demo" and not bads:
        bads = [("--frames", st.just("0"))]
    for extra in draw(st.lists(st.sampled_from(OK[cmd]), max_size=2)):
        argv += extra
    for opt, values in bads:                   # last, so that a valid option never overrides them
        argv += [opt, draw(values)]
    return argv


def _tree(root: Path) -> dict:
    out = {}
    for p in sorted(root.rglob("*")):
        s = p.lstat()
        out[str(p.relative_to(root))] = (s.st_size, s.st_mtime_ns, s.st_mode)
    return out


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(argv=bad_argv())
def test_bad_input_is_one_line_exit_2_and_touches_nothing(ws, argv):
    before = _tree(ws)
    err, out = io.StringIO(), io.StringIO()
    cwd = os.getcwd()
    os.chdir(ws)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            try:
                rc = main(argv)
            except SystemExit as e:          # argparse
                rc = e.code
    finally:
        os.chdir(cwd)
    text = err.getvalue()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert rc == 2, (argv, rc, text)
    assert len(lines) == 1, (argv, text)
    assert "error:" in lines[0] and "Traceback" not in text, (argv, text)
    assert _tree(ws) == before, (argv, "files changed")
