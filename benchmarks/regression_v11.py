"""Full-size regression: SqueezeNet v1.1 (int8, 224x224, auto-folded for 2,000 multipliers) on 32
real photos back to back in Verilator, every logit checked against the golden model.

Timed end to end: generating the Verilog, the Verilator build (cold with ``--cold``: a fresh,
empty cache folder, as after any change to the design), the simulation, and the golden and float
models.  Writes per photo its label and the classes of the hardware, the golden model and the
float model (``--json``), and a table of them (``--table``, Markdown).

    python benchmarks/regression_v11.py --photos 32 --cold --json docs/results/regression_v11.json \
        --table docs/results/regression_v11.md

Needs ../shared/data/imagenet (real v1.1 weights and photos).  Not a CI test.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _cpu() -> float:
    import resource
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=int, default=32)
    ap.add_argument("--multipliers", type=int, default=2000)
    ap.add_argument("--cold", action="store_true", help="build in a fresh, empty Verilator cache folder")
    ap.add_argument("--style", default=None, help="Verilator build style (default: fast)")
    ap.add_argument("--json", metavar="FILE")
    ap.add_argument("--table", metavar="FILE", help="per-photo classes as a Markdown table")
    args = ap.parse_args(argv)
    from fullsize import DATA, quantized_v11
    if not (DATA / "squeezenet1_1.npz").is_file():
        print(f"benchmark needs {DATA} (real ImageNet weights and photos); not found", file=sys.stderr)
        return 2
    import numpy as np
    from squeezehw.sim.simulate import make_harness, simulate_frames

    from squeezehw.frontend import float_model
    from squeezehw.frontend.images import list_image_folder, load_images
    from squeezehw.plan.folding import auto_fold
    from squeezehw.quant import golden
    from squeezehw.quant.evaluate import float_network_of
    from squeezehw.toolchain import verilator
    style = verilator.STYLES[args.style] if args.style else verilator.default_style()
    t_start, cpu_start = time.monotonic(), _cpu()
    model = quantized_v11(False)
    fold = auto_fold(model, max_multipliers=args.multipliers, speed_slack=0.02)
    files, labels, _ = list_image_folder(DATA / "sample")
    pick = [i for i in range(len(files)) if i % 10 == 5][:args.photos]     # not calibration photos
    x, _, _ = load_images([files[i] for i in pick], height=224, width=224, channels=3, resize=256,
                          progress=False)
    prepare = time.monotonic() - t_start
    with tempfile.TemporaryDirectory(prefix="regression_v11.", dir=REPO / "build") as td:
        if args.cold:
            os.environ["SQUEEZEHW_CACHE"] = td
        t0 = time.monotonic()
        harness, name, meta = make_harness(model, fold, len(x), style=style)
        text = verilator.to_verilog(harness, name)
        generate = time.monotonic() - t0
        print(f"[regression] Verilog generated in {generate:.1f} s", file=sys.stderr, flush=True)
        b = verilator.build(harness, name=name, style=style, extra_meta=meta, text=text)
        print(f"[regression] simulating {len(x)} photos ...", file=sys.stderr, flush=True)
        rep = simulate_frames(model, fold, x, build=b, progress=False)
    t0 = time.monotonic()
    fl = float_model.forward(float_network_of(model), x)[0].argmax(axis=1)
    gold = golden.run(model, x).classes
    reference = time.monotonic() - t0
    total, cpu = time.monotonic() - t_start, _cpu() - cpu_start
    photos = [{"photo": str(Path(files[i]).relative_to(DATA)), "label": int(labels[i]),
               "hardware": rep.classes[k] if rep.classes else None, "golden": int(gold[k]),
               "float": int(fl[k])} for k, i in enumerate(pick)]
    out = {
        "design": f"SqueezeNet v1.1 int8 224x224, --fold auto --max-multipliers {args.multipliers}",
        "photos": len(x), "bit_exact": rep.bit_exact, "mismatches": rep.mismatches[:10],
        "build_style": b.meta.get("style"), "cold_build": args.cold,
        "cycles_per_frame": rep.cycles_per_frame, "expected_cycles_per_frame": rep.expected_cycles_per_frame,
        "frame_intervals_all_equal": len(set(rep.frame_intervals)) == 1,
        "total_cycles": rep.total_cycles,
        "seconds": {"total": round(total, 1), "prepare_model_and_photos": round(prepare, 1),
                    "verilog_generation": round(generate, 1), "verilator_build": round(b.seconds, 1),
                    "simulation": rep.sim_seconds, "golden_and_float": round(reference, 1)},
        "cpu_seconds": {"total": round(cpu, 1), "verilator_build": round(b.cpu_seconds, 1)},
        "sim_cycles_per_second": round(rep.sim_cycles_per_second, 1),
        "sim_cycles_per_cpu_second": round(rep.sim_cycles_per_cpu_second, 1),
        "load_average_at_end": os.getloadavg(),
        "top1": {"hardware": float(np.mean([p["hardware"] == p["label"] for p in photos])),
                 "golden": float(np.mean([p["golden"] == p["label"] for p in photos])),
                 "float": float(np.mean([p["float"] == p["label"] for p in photos]))},
        "hardware_equals_golden": all(p["hardware"] == p["golden"] for p in photos),
        "per_photo": photos,
    }
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    if args.table:
        rows = ["| photo | label | hardware | golden | float |", "|---|---:|---:|---:|---:|"]
        rows += [f"| {p['photo']} | {p['label']} | {p['hardware']} | {p['golden']} | {p['float']} |" for p in photos]
        Path(args.table).write_text("\n".join(rows) + "\n")
    print(json.dumps({k: v for k, v in out.items() if k != "per_photo"}, indent=1))
    return 0 if rep.bit_exact else 1


if __name__ == "__main__":
    sys.exit(main())
