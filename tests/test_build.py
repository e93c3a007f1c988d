"""`squeezehw build`: deterministic output, a complete design report, clear errors, no half output."""
import json

import pytest

from squeezehw.cli import main
from squeezehw.pipeline import default_int_model
from squeezehw.plan.folding import Folding, LayerFold, default_folding


def files(d):
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    a, b = tmp_path_factory.mktemp("a") / "out", tmp_path_factory.mktemp("b") / "out"
    assert main(["build", "default", "-o", str(a)]) == 0
    assert main(["build", "default", "-o", str(b)]) == 0
    return a, b


def test_same_input_same_bytes(built):
    a, b = built
    fa, fb = files(a), files(b)
    assert fa.keys() == fb.keys()
    assert [k for k in fa if fa[k] != fb[k]] == []


def test_design_report_has_layers_fifos_and_totals(built):
    a, _ = built
    d = json.loads((a / "design.json").read_text())
    model = default_int_model(progress=False)
    assert (a / d["verilog"]).is_file() and f"module {d['top']}" in (a / d["verilog"]).read_text()
    names = [r["layer"] for r in d["layers"]]
    assert names == list(default_folding(model).layers)
    for r in d["layers"]:
        assert {"simd", "pe", "cycles", "multipliers", "weight_bits"} <= r.keys()
    assert set(d["fifos"]) == {l.name for l in model.layers if type(l).__name__ == "QFire"}
    t = d["totals"]
    assert t["multipliers"] == sum(r["multipliers"] for r in d["layers"])
    assert t["expected_cycles_per_frame"] == max(r["cycles"] for r in d["layers"])
    # every conv's weight memory image is there, one word per address
    for r in d["layers"]:
        if r["kind"] == "conv":
            words = (a / "mem" / f"{r['layer']}.hex").read_text().split()
            assert len(words) * r["simd"] * r["pe"] * 8 >= r["weight_bits"]


def test_bad_folding_is_an_error_and_writes_nothing(tmp_path, capsys):
    model = default_int_model(progress=False)
    fold = default_folding(model)
    layers = dict(fold.layers)
    layers["features.0"] = LayerFold(simd=1, pe=3)          # 3 does not divide 16 output channels
    Folding(layers).save(tmp_path / "bad.json")
    out = tmp_path / "out"
    assert main(["build", "default", "--fold", str(tmp_path / "bad.json"), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "features.0" in err and "pe=3" in err and "16" in err
    assert not out.exists()
    layers = dict(fold.layers)
    layers["features.99"] = layers.pop("features.0")
    Folding(layers).save(tmp_path / "names.json")
    assert main(["build", "default", "--fold", str(tmp_path / "names.json"), "-o", str(out)]) == 2
    assert "features.99" in capsys.readouterr().err and not out.exists()


def test_auto_fold_infeasible_names_best_figure(capsys):
    assert main(["fold", "default", "--fold", "auto", "--target-fps", "1e6", "--clock", "100"]) == 2
    assert "cannot reach 100 cycles per frame: the fastest folding needs" in capsys.readouterr().err
    # under one cycle per frame: said in frames/s, not as "cannot reach 0 cycles per frame"
    assert main(["fold", "default", "--fold", "auto", "--target-fps", "1e9", "--clock", "100"]) == 2
    err = capsys.readouterr().err
    assert "less than one clock cycle per frame" in err and "frames/s" in err and "0 cycles" not in err


def test_resource_budgets_are_checked(capsys):
    assert main(["fold", "default", "--max-bram", "5"]) == 2
    err = capsys.readouterr().err
    assert "DP16KD" in err and "more than --max-bram (5)" in err
    assert main(["fold", "default", "--fold", "auto", "--max-dsp", "4"]) == 2
    assert "needs at least" in capsys.readouterr().err


def test_dsp_ecp5_build_uses_registered_mult18x18d_and_is_refused_off_ecp5(built, tmp_path, capsys):
    """`--dsp ecp5` writes MULT18X18D instances (their own input/output registers); the same multiplies
    as the generic build, which has none; synthesising it for an iCE40 part is refused by name."""
    generic, _ = built
    out = tmp_path / "ecp5"
    assert main(["build", "default", "--dsp", "ecp5", "-o", str(out)]) == 0
    info = json.loads((out / "design.json").read_text())
    assert info["dsp"] == "ecp5" and json.loads((generic / "design.json").read_text())["dsp"] == "generic"
    text = (out / info["verilog"]).read_text()
    n_dsp = text.count("MULT18X18D #(")
    assert n_dsp >= info["totals"]["multipliers"] and text.count('.REG_OUTPUT_CLK("CLK0")') > 0
    assert "MULT18X18D" not in (generic / info["verilog"]).read_text()
    capsys.readouterr()
    assert main(["synth", str(out), "--board", "up5k", "--no-progress"]) == 2
    assert "--dsp ecp5" in capsys.readouterr().err
