"""Per-layer cycles chart: how busy each stage's array is against the pipeline's pace.

    python benchmarks/cycles_chart.py --model build/bench-sq11-w8.npz --max-multipliers 2000 \
        --measured 219000 -o docs/img/cycles_sq11_2000.png

Bars: each stage's cycles per frame from the cost model (squeezehw.plan.folding), coloured by stage kind;
the line: the measured cycles per frame from Verilator (--measured, from benchmarks/fullsize.py).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default")
    ap.add_argument("--max-multipliers", type=int, default=None)
    ap.add_argument("--measured", type=float, default=None, help="measured cycles per frame")
    ap.add_argument("-o", "--output", required=True)
    args = ap.parse_args(argv)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from squeezehw.pipeline import resolve_model
    from squeezehw.plan.folding import auto_fold, default_folding
    model = resolve_model(args.model)
    fold = auto_fold(model, max_multipliers=args.max_multipliers) if args.max_multipliers else default_folding(model)
    rows = fold.table(model)
    names = [r["layer"].replace("features.", "f").replace("classifier.", "c") for r in rows]
    colors = ["#4C72B0" if r["kind"] == "conv" else "#999999" for r in rows]
    fig, ax = plt.subplots(figsize=(12, 4.5))
    ax.bar(range(len(rows)), [r["cycles"] for r in rows], color=colors)
    pace = max(r["cycles"] for r in rows)
    ax.axhline(pace, color="#C44E52", ls="--", lw=1, label=f"cost-model pace {pace:,} cycles")
    if args.measured:
        ax.axhline(args.measured, color="black", lw=1, label=f"measured (Verilator) {args.measured:,.0f} cycles")
    ax.set_xticks(range(len(rows)), names, rotation=70, fontsize=8)
    ax.set_ylabel("cycles per frame")
    ax.set_ylim(0, 1.12 * max(pace, args.measured or 0))
    s = fold.summary(model)
    ax.set_title(f"{model.name}: {s['multipliers']} multipliers, expected MAC efficiency "
                 f"{s['expected_mac_efficiency']:.3f} (grey: max-pools)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.output, dpi=110)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
