"""``squeezehw fold``: choose PE/SIMD per layer and write a folding file."""
import json
import sys

NAME = "fold"
HELP = "choose the parallelism (PE/SIMD) of every layer and write a folding file"
ORDER = 30
DESCRIPTION = """\
Picks a folding for MODEL (an integer-model file, or `default` for the built-in model) and writes it
as JSON, with a per-layer table: cycles per frame, multipliers, and how busy each layer's array is
when the slowest layer sets the pace.  `--fold auto` balances the pipeline for a budget of MAC
multipliers (--max-multipliers), of DSPs (--max-dsp, or --board for its DSP count: every multiplier
the design instantiates, MAC, requantisation and bypass add, is counted) or a frame rate
(--target-fps at --clock MHz), using the fewest multipliers per layer that reach the pace.  An
unreachable target is an error that states the best achievable figure.

examples:
  squeezehw fold default -o fold.json
  squeezehw fold sq11.npz --fold auto --max-multipliers 2000 -o sq11-2000.json
  squeezehw fold default --board ulx3s-85f --requant serial
  squeezehw fold sq11.npz --fold auto --target-fps 500 --clock 200 -o sq11-500fps.json"""


def add_arguments(p):
    from ..pipeline import add_fold_arguments, add_target_arguments
    p.add_argument("model", metavar="MODEL", help="integer-model file, or `default`")
    add_fold_arguments(p)
    add_target_arguments(p)
    p.add_argument("-o", "--output", metavar="FILE", help="folding file to write")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def table_text(rows, summary, clock_mhz) -> str:
    out = [f"{'layer':<26}{'kind':<6}{'SIMD':>6}{'PE':>5}{'cycles':>10}{'mults':>7}{'busy':>7}"]
    for r in rows:
        busy = f"{r['utilisation']:.2f}" if r["utilisation"] is not None else "-"
        out.append(f"{r['layer']:<26}{r['kind']:<6}{r['simd']:>6}{r['pe']:>5}{r['cycles']:>10}"
                   f"{r['multipliers']:>7}{busy:>7}")
    c = summary["expected_cycles_per_frame"]
    out.append(f"{summary['multipliers']} MAC multipliers (+ {summary['requant_multipliers']} requantisation, "
               f"{summary['add_multipliers']} bypass-add; {summary['dsp']} {summary['dsp_cell']} on "
               f"{summary['dsp_target']}), {c} cycles/frame (bottleneck {summary['bottleneck']}), "
               f"expected MAC efficiency {summary['expected_mac_efficiency']:.3f}, "
               f"{clock_mhz * 1e6 / c:.1f} frames/s at {clock_mhz:g} MHz")
    return "\n".join(out)


def _is_folding_file(path) -> bool:
    from ..plan.folding import FORMAT
    try:
        return json.loads(open(path, encoding="utf-8").read()).get("format") == FORMAT
    except Exception:        # anything unreadable is not one of ours
        return False


def run(args):
    from ..pipeline import config_from_args, folding_for_config, resolve_model
    from ..plan.lowering import lower
    if args.output:
        from ..outputs import check_output_file
        check_output_file(args.output, "-o", inputs=[("--fold", args.fold)], kind="squeezehw folding file",
                          is_same_kind=_is_folding_file)
    model = resolve_model(args.model)
    config = config_from_args(args, args.model)
    fold = folding_for_config(config, model)
    plan = lower(model, fold, config.target())
    board = config.board_entry() or "ecp5-85f"
    rows, summary = plan.table(), plan.summary()
    from ..boards.registry import get_board
    summary.update(dsp=plan.dsp(board), dsp_target=get_board(board).name,
                   dsp_cell=get_board(board).resources.dsp_cell)
    if args.output:
        fold.save(args.output, model.name)
    if args.json:
        print(json.dumps({"model": model.name, "output": args.output, "clock_mhz": args.clock,
                          "fps": args.clock * 1e6 / summary["expected_cycles_per_frame"],
                          **summary, "layers": rows}, indent=1))
    else:
        print(table_text(rows, summary, args.clock))
        if args.output:
            print(f"wrote {args.output}", file=sys.stderr)
    return 0
