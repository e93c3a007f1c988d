"""The installed package is whole: a wheel holds sim/ and boards/ as squeezehw.sim and squeezehw.boards
(testbenches, cell models, board tops, the registry) and the default model's data, and imports them
from its own folder, with no sys.path edits anywhere in the package."""
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE_DIRS = ("squeezehw", "sim", "boards")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for d in PACKAGE_DIRS:
        shutil.copytree(REPO / d, src / d, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("wheel")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                        "-w", str(out), str(src)], capture_output=True, text=True)
    if r.returncode != 0 and "No module named" in r.stderr and "setuptools" in r.stderr:
        pytest.skip("setuptools is not installed in this environment: cannot build a wheel")
    assert r.returncode == 0, r.stderr[-2000:]
    (whl,) = out.glob("squeezehw-*.whl")
    return whl


def test_wheel_holds_sim_boards_and_data(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for f in ("squeezehw/sim/tb_harness.py", "squeezehw/sim/tb_board.py", "squeezehw/sim/harness.py",
              "squeezehw/sim/models/MULT18X18D.v", "squeezehw/sim/models/squeezehw_stimulus_mem.v",
              "squeezehw/boards/registry.py", "squeezehw/boards/top.py", "squeezehw/boards/protocol.py",
              "squeezehw/quant/data/default_model.npz", "squeezehw/plan/lowering.py",
              "squeezehw/toolchain/verilator.py", "squeezehw/hw/mvu.py", "squeezehw/commands/build.py"):
        assert f in names, f"{f} missing from {wheel.name}"
    # every module of the repository's package folders is in the wheel
    for d in PACKAGE_DIRS:
        for py in (REPO / d).rglob("*.py"):
            rel = py.relative_to(REPO)
            inside = rel if d == "squeezehw" else Path("squeezehw") / rel
            assert inside.as_posix() in names, f"{rel} is not installed (as {inside})"


def test_installed_wheel_imports_from_itself(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = """
import sys
from squeezehw.boards.registry import get_board
from squeezehw.toolchain import verilator
from squeezehw.outputs import cache_dir
import squeezehw.sim.tb_harness, squeezehw.boards.top, squeezehw.sim.harness
top = get_board("ulx3s-85f").board_top_class()
print(squeezehw.sim.tb_harness.__file__)
print(sys.modules[top.__module__].__file__)
print(verilator.SIM_DIR)
print(verilator.vendor_models("MULT18X18D u0 ();")[:200].strip().splitlines()[0])
print(cache_dir())
"""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(site), "XDG_CACHE_HOME": str(tmp_path / "cache"),
           "HOME": str(tmp_path)}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    tb, top, sim_dir, model_line, cache = r.stdout.strip().splitlines()
    for p in (tb, top, sim_dir):
        assert Path(p).is_relative_to(site), (p, site)
    assert model_line.startswith("//") or "module" in model_line, model_line
    assert Path(cache) == tmp_path / "cache" / "squeezehw"


def test_no_sys_path_edits_in_the_package():
    for d in PACKAGE_DIRS:
        for py in (REPO / d).rglob("*.py"):
            text = py.read_text()
            assert "sys.path" not in text, f"{py.relative_to(REPO)} edits sys.path"
