"""Cost model vs the tools: predicted resources of a design against Yosys + nextpnr's own report.

    python benchmarks/resources_vs_yosys.py --json            # built-in default model on ECP5-85F

Prints, per resource (LUT, FF, DSP, block RAM), the cost model's figure (squeezehw.plan.resources), the
figure from nextpnr's report after place-and-route, and their ratio; also Fmax.  Not a CI test
(place-and-route takes minutes).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default", help="integer-model file or `default`")
    ap.add_argument("--fold", default=None, help="folding file (default: the default folding)")
    ap.add_argument("--board", default="ecp5-85f")
    ap.add_argument("--target-mhz", type=float, default=100.0)
    ap.add_argument("-o", "--out", default=str(REPO / "build" / "resources_vs_yosys"))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    from squeezehw.boards.registry import get_board

    from squeezehw.pipeline import resolve_folding, resolve_model
    from squeezehw.plan.lowering import Target, lower
    from squeezehw.plan.resources import estimate
    from squeezehw.toolchain.synth import synthesize
    model = resolve_model(args.model)
    fold = resolve_folding(args.fold, model)
    board = get_board(args.board)
    plan = lower(model, fold, Target(multiplier=board.multiplier))
    pred = estimate(plan, board)
    rep = synthesize(plan.accelerator(), board=args.board, out_dir=args.out,
                     target_mhz=args.target_mhz)
    rows = {}
    for key, p in (("lut", pred["lut"]), ("ff", pred["ff"]), ("dsp", pred["dsp"]), ("bram", pred["block_ram"])):
        t = getattr(rep, key)
        rows[key] = {"predicted": p, "tools": t, "ratio": (p / t) if t else None}
    out = {"model": model.name, "board": args.board, "source": rep.source, "resources": rows,
           "fmax_mhz": rep.fmax_mhz, "target_mhz": rep.target_mhz, "timing_met": rep.timing_met,
           "mac_multipliers": pred["mac_multipliers"], "seconds": rep.seconds}
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        print(f"{model.name} on {args.board} ({rep.source}):")
        for k, r in rows.items():
            ratio = f"{r['ratio']:.2f}" if r["ratio"] else "-"
            print(f"  {k:<5} predicted {r['predicted']:>7}  tools {r['tools']:>7}  ratio {ratio}")
        print(f"  Fmax {rep.fmax_mhz} MHz (target {rep.target_mhz}, met {rep.timing_met})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
