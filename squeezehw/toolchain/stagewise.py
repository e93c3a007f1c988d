"""Stage-by-stage ("out-of-context") board builds, for designs too large for YoWASP's Yosys.

YoWASP's Yosys is WebAssembly with at most 4 GB of memory.  A full ImageNet SqueezeNet on the
GW5AST-138C trapped right after flattening (25 min in), and unflattened it was still in ABC9 after
65 min (benchmarks/gowin_moonshot.py).  Here every child module of one partition module (the
accelerator's stages) is synthesised on its own, several at a time, and only then joined:

1. the board top goes through the board's amaranth-boards platform as in
   :func:`squeezehw.toolchain.synth.build_board` (same RTLIL, pin constraints and nextpnr/packer
   command lines), but only its files are written;
2. the RTLIL is split by module: each stage's modules to a file of their own, the rest ("glue":
   board top, UART, the accelerator's stream links) to another, where each stage is a black box
   with the stage's ports;
3. Yosys maps each stage (``synth_command -noiopads``: its ports are not pins) and the glue
   (with I/O buffers) to the part's cells; library black boxes are dropped from each netlist;
4. one last Yosys run reads the mapped netlists, flattens them into one, and writes the netlist
   nextpnr places; nextpnr and the packer run the platform's own command lines.

The price is optimisation across stage boundaries (a constant on a stage port is not propagated
into the stage), which the streaming ports between stages hardly offer.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..errors import UserError
from .gowin_slices import slice_positions
from .synth import (RESET_TREE_KEEP, _PACKERS, _TOOLS, _log_tail, _run_tool, _ToolFailed, _write_json_atomic,
                    board_nextpnr_opts, board_report, board_synth_opts, find_tool, get_board,
                    logic_memory_commands)

_MODULE = re.compile(r"^module \\(\S+)$")
_PORT = re.compile(r"^\s+wire .*\b(input|output|inout) \d+\s")


def split_rtlil(text: str) -> tuple[str, dict[str, str]]:
    """(header, {module name: its text, with the attribute lines before it}) of an RTLIL file."""
    header, modules, pending, current, name = [], {}, [], None, None
    for line in text.splitlines(keepends=True):
        if current is None:
            m = _MODULE.match(line.rstrip("\n"))
            if m:
                name, current = m.group(1), pending + [line]
                pending = []
            elif line.startswith("attribute "):
                pending.append(line)
            elif not modules and not pending:
                header.append(line)
            continue
        current.append(line)
        if line.rstrip("\n") == "end":
            modules[name] = "".join(current)
            current = None
    if current is not None or pending:
        raise UserError("the RTLIL the platform wrote ends inside a module: it is truncated")
    return "".join(header), modules


def blackbox_stub(module_text: str) -> str:
    """The module with only its ports, marked as a black box standing for a stage."""
    lines = module_text.splitlines(keepends=True)
    head = [ln for ln in lines if ln.startswith("module ")]
    ports = [ln for ln in lines if _PORT.match(ln)]
    return "attribute \\blackbox 1\nattribute \\squeezehw_stage 1\n" + "".join(head + ports) + "end\n"


def partitions(modules: dict[str, str], parent: str) -> dict[str, list[str]]:
    """{each child module of ``parent``: it and all modules below it}."""
    kids = sorted({n[len(parent) + 1:].split(".")[0] for n in modules if n.startswith(parent + ".")})
    out = {}
    for k in kids:
        root = f"{parent}.{k}"
        out[root] = [n for n in modules if n == root or n.startswith(root + ".")]
    return out


def _yosys_script(reads: str, top: str, synth: str, extra_memory: str, netlist: str, drop: str) -> str:
    return (f"{reads}\nhierarchy -top {top}\nproc\n{RESET_TREE_KEEP}\n{extra_memory}"
            f"{synth} -top {top}\n"
            # every synth run adds the part's cell library (black boxes): the glue keeps the one
            # copy nextpnr reads port directions from, and drops its stage stand-ins
            f"delete {drop}\n"
            f"write_json {netlist}\ntee -q -o stat.json stat -json\n")


def build_board_stagewise(top_elaboratable, *, board, out_dir, partition: str, name: str = "top",
                          target_mhz: float | None = None, seed: int = 1, jobs: int = 2,
                          progress: bool = True, logic_memories: tuple = (), nextpnr_extra=()):
    """Build a board top into a bitstream as :func:`squeezehw.toolchain.synth.build_board` does, but
    with every child of the module ``partition`` (its Amaranth path below the top, e.g.
    ``"core.accel"``) synthesised on its own, ``jobs`` Yosys runs at a time.  Returns the same
    SynthReport (``step_seconds``: "stages", "join", "pnr").  ``nextpnr_extra``: more nextpnr
    options, e.g. ``("--placer", "sa")`` (Gowin's has no "static" placer).  Stage logs are in
    ``out_dir/stages/<stage>/``."""
    from amaranth.hdl import Elaboratable
    t_start = time.monotonic()
    b = get_board(board)
    if b.family != "gowin":
        raise UserError(f"stage-by-stage builds are wired for the Gowin flow; {b.name} is {b.family}: "
                        f"use squeezehw.toolchain.synth.build_board")
    if not isinstance(top_elaboratable, Elaboratable):
        raise UserError(f"build_board_stagewise needs an amaranth Elaboratable board top, "
                        f"not {type(top_elaboratable).__name__}")
    if not isinstance(jobs, int) or jobs < 1:
        raise UserError(f"jobs must be a positive number of Yosys runs at a time, not {jobs!r}")
    pnr_tool, pack_tool = f"nextpnr-{b.family}", _PACKERS[b.family][0]
    exes = {t: find_tool(t) for t in ("yosys", pnr_tool, pack_tool)}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").unlink(missing_ok=True)
    (out / f"{name}.report.json").unlink(missing_ok=True)
    nextpnr_opts, target_mhz = board_nextpnr_opts(b, name, seed, target_mhz, nextpnr_extra)
    plan = b.platform_class()().prepare(top_elaboratable, name, emit_src=False, nextpnr_opts=" ".join(nextpnr_opts),
                                        synth_opts=board_synth_opts(b))
    plan.extract(str(out))
    header, modules = split_rtlil((out / f"{name}.il").read_text())
    parent = f"{name}.{partition}"
    parts = partitions(modules, parent)
    if not parts:
        raise UserError(f"no module {parent}.* in the design: partition {partition!r} must be the Amaranth "
                        f"path (below the top) of the module whose children are built one by one")
    memory_script = logic_memory_commands(b.resources, extra=logic_memories)
    synth = f"{b.synth_command.split()[0]} {board_synth_opts(b)}"
    seconds: dict[str, float] = {}

    # 1. each stage on its own
    in_stage = {n for ms in parts.values() for n in ms}
    runs = {}
    for root, ms in parts.items():
        d = out / "stages" / root[len(parent) + 1:]
        d.mkdir(parents=True, exist_ok=True)
        (d / "stage.il").write_text(header + "".join(modules[n] for n in ms))
        (d / "synth.ys").write_text(_yosys_script('read_rtlil "stage.il"', root, synth + " -noiopads",
                                                  memory_script, "stage.json", "=A:blackbox"))
        runs[root] = d
    glue = out / "glue"
    glue.mkdir(exist_ok=True)
    (glue / "glue.il").write_text(header + "".join(t for n, t in modules.items() if n not in in_stage)
                                  + "".join(blackbox_stub(modules[r]) for r in parts))
    (glue / "synth.ys").write_text(_yosys_script('read_rtlil "glue.il"', name, synth, memory_script, "glue.json",
                                                   "=A:squeezehw_stage"))

    def yosys(d: Path):
        try:
            _run_tool("yosys", ["-q", "-l", "yosys.full.log", "-s", "synth.ys"], log=d / "yosys.log", cwd=d)
        except _ToolFailed as e:
            raise UserError(f"Yosys failed on {d.name} (status {e.returncode}); see {d / 'yosys.full.log'}:\n"
                            f"{_log_tail(d / 'yosys.full.log')}") from None
        return d

    from tqdm import tqdm
    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=jobs) as pool, \
            tqdm(total=len(runs) + 1, desc=f"yosys {b.name}, {len(runs)} stages + glue, {jobs} at a time",
                 unit="run", disable=None if progress else True, file=sys.stderr) as bar:
        for d in pool.map(yosys, [glue, *runs.values()]):
            bar.set_postfix_str(d.name)
            bar.update()
    seconds["stages"] = round(time.monotonic() - t0, 3)

    # 2. join: the mapped netlists flattened into one, as the platform's nextpnr line expects
    reads = "\n".join(f'read_json "{(d / ("glue.json" if d == glue else "stage.json")).relative_to(out)}"'
                      for d in [glue, *runs.values()])
    # check -assert: a stage port left undriven or driven twice by the join stops here, not in nextpnr
    (out / "join.ys").write_text(f"{reads}\nhierarchy -top {name}\nflatten\nclean\ncheck -assert\n"
                                 f"write_json {name}.syn.json\ntee -q -o stat.json stat -json\n")
    t0 = time.monotonic()
    if progress:
        print(f"synth: joining {len(runs)} stage netlists ...", file=sys.stderr, flush=True)
    try:
        _run_tool("yosys", ["-q", "-l", f"{name}.rpt", "-s", "join.ys"], log=out / "join.log", cwd=out)
    except _ToolFailed as e:
        raise UserError(f"Yosys failed to join the stage netlists (status {e.returncode}); see "
                        f"{out / (name + '.rpt')}:\n{_log_tail(out / (name + '.rpt'))}") from None
    seconds["join"] = round(time.monotonic() - t0, 3)
    # the LUT positions nextpnr will need (its pass-through LUTs included): over the part, its placer
    # spends an hour before it gives up (docs/boards.md, the moonshot), so stop here and say why
    need = slice_positions(out / f"{name}.syn.json", name)
    _write_json_atomic(out / "slices.json", need)
    if need["positions"] > b.resources.lut:
        raise UserError(
            f"the joined netlist needs {need['positions']} LUT positions, the part has {b.resources.lut} "
            f"({need['positions'] - b.resources.lut} over): {need['lut']} LUTs, {need['alu']} ALUs and "
            f"{need['ff_unpaired']} of its {need['ff']} flip-flops that no LUT of their own feeds (each takes "
            f"a pass-through LUT; by driver: {need['unpaired_by_driver']}); use less of the fabric: fewer "
            f"memories built from logic (logic_memories), fewer multipliers, or flip-flop chains in block "
            f"RAM (squeezehw.toolchain.gowin_slices)")

    # 3. the platform's own place-and-route and packing lines (its script minus the Yosys line)
    script = (out / f"build_{name}.sh").read_text().splitlines()
    pnr = "\n".join(ln for ln in script if '"$YOSYS"' not in ln)
    (out / f"pnr_{name}.sh").write_text(pnr + "\n")
    env = dict(os.environ)
    env.update({"YOSYS": exes["yosys"], _TOOLS[pnr_tool][0]: exes[pnr_tool], _TOOLS[pack_tool][0]: exes[pack_tool]})
    if progress:
        print(f"synth: {pnr_tool} + {pack_tool} ({b.device}), the long step ...", file=sys.stderr, flush=True)
    t0 = time.monotonic()
    with open(out / "pnr.log", "w") as log:
        rc = subprocess.run(["sh", f"pnr_{name}.sh"], cwd=out, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    seconds["pnr"] = round(time.monotonic() - t0, 3)
    if rc != 0:
        tim = out / f"{name}.tim"
        log = tim if tim.exists() else out / "pnr.log"
        hint = ("\nnextpnr's placer could not legalise the design although it fits the part's totals: "
                "use less of the fabric (fewer multipliers, fewer memories in logic: logic_memories / "
                "spill_to_logic's spare_blocks) or try another seed"
                if "utilisation limit" in log.read_text(errors="replace") else "")
        raise UserError(f"place-and-route for {b.name} failed (status {rc}); see {tim}:\n{_log_tail(log)}{hint}")
    return board_report(out, name=name, board=b, exes=exes, target_mhz=target_mhz, seed=seed,
                        seconds=round(time.monotonic() - t_start, 3), step_seconds=seconds)

