"""Verilator build time and simulation speed: the legacy build style against the fast one, side by
side in one run on the same machine, on the same Verilog.

For each style the design is compiled cold (a fresh, empty cache folder) and then simulates the
same images back to back, checked bit for bit against the golden model.  Reported per style: the
Verilator build's wall-clock and CPU seconds (verilator + every compiler process), the simulation's
wall-clock and CPU seconds, simulated cycles per wall-clock second and per CPU second of the run
(the CPU figure is what the machine's other work does not stretch), the stimulus load time, and
the ratios fast / legacy.  Generating the Verilog (Amaranth + Yosys) is timed apart for each
style (the fast style's harness has no stimulus memory contents in its Verilog).

    python benchmarks/sim_speed.py --design default --frames 4 --json out.json
    python benchmarks/sim_speed.py --design sq11 --multipliers 2000 --frames 2 --json out.json

``--design sq11`` needs ../shared/data/imagenet (real v1.1 weights and photos).
Not a CI test: on the full design each build takes minutes.
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


def design(args):
    """(model, folding, images, description)."""
    if args.design == "default":
        from squeezehw.pipeline import default_int_model
        from squeezehw.plan.folding import default_folding
        from squeezehw.quant.default_model import default_eval_images
        model = default_int_model(False)
        x, _ = default_eval_images(args.frames)
        return model, default_folding(model), x, "default MNIST model, default folding"
    from fullsize import DATA, quantized_v11

    from squeezehw.frontend.images import list_image_folder, load_images
    from squeezehw.plan.folding import auto_fold
    if not (DATA / "squeezenet1_1.npz").is_file():
        raise SystemExit(f"--design sq11 needs {DATA} (real ImageNet weights and photos); not found")
    model = quantized_v11(False)
    fold = auto_fold(model, max_multipliers=args.multipliers, speed_slack=0.02)
    files, _, _ = list_image_folder(DATA / "sample")
    pick = [i for i in range(len(files)) if i % 10 == 5][:args.frames]     # not calibration photos
    x, _, _ = load_images([files[i] for i in pick], height=224, width=224, channels=3, resize=256,
                          progress=False)
    return model, fold, x, f"SqueezeNet v1.1 int8 224x224, --fold auto --max-multipliers {args.multipliers}"


def measure(style, model, fold, x, cache: Path) -> dict:
    from squeezehw.sim.simulate import make_harness, simulate_frames

    from squeezehw.toolchain import verilator
    os.environ["SQUEEZEHW_CACHE"] = str(cache)          # cold: nothing cached for this style
    harness, name, meta = make_harness(model, fold, len(x), style=style)
    t0 = time.monotonic()
    text = verilator.to_verilog(harness, name)
    generate = time.monotonic() - t0
    print(f"[sim_speed] {style.name}: Verilog generated in {generate:.1f} s ({len(text) / 1e6:.1f} MB)",
          file=sys.stderr, flush=True)
    print(f"[sim_speed] {style.name}: building ...", file=sys.stderr, flush=True)
    b = verilator.build(harness, name=name, progress=True, style=style, extra_meta=meta, text=text)
    print(f"[sim_speed] {style.name}: built in {b.seconds:.1f} s ({b.cpu_seconds:.1f} s CPU); simulating ...",
          file=sys.stderr, flush=True)
    rep = simulate_frames(model, fold, x, build=b, progress=False)
    r = {
        "style": style.name, "verilator_args": list(style.verilator_args), "make_vars": list(style.make_vars),
        "memories": style.memories, "preload": style.preload, "runtime_cache": style.runtime_cache,
        "verilog_generation_seconds": round(generate, 1), "generated_verilog_bytes": len(text),
        "build_seconds": round(b.seconds, 1), "build_cpu_seconds": round(b.cpu_seconds, 1),
        "cpp_bytes": sum(f.stat().st_size for f in b.directory.glob("Vtop*.cpp")),
        "verilog_bytes": b.verilog.stat().st_size,
        "bit_exact": rep.bit_exact, "mismatches": rep.mismatches[:5], "frames": rep.frames,
        "cycles_per_frame": rep.cycles_per_frame, "expected_cycles_per_frame": rep.expected_cycles_per_frame,
        "total_cycles": rep.total_cycles, "sim_seconds": rep.sim_seconds,
        "stimulus_load_seconds": rep.stimulus_load_seconds,
        "sim_cycles_per_second": round(rep.sim_cycles_per_second, 1),
        "sim_cycles_per_cpu_second": round(rep.sim_cycles_per_cpu_second, 1),
        "classes": rep.classes, "golden_classes": rep.golden_classes,
    }
    print(f"[sim_speed] {style.name}: {json.dumps({k: r[k] for k in ('bit_exact', 'sim_seconds', 'sim_cycles_per_second', 'sim_cycles_per_cpu_second')})}",
          file=sys.stderr, flush=True)
    return r


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--design", choices=("default", "sq11"), default="default")
    ap.add_argument("--multipliers", type=int, default=2000, help="sq11: multiplier budget for auto folding")
    ap.add_argument("--frames", type=int, default=2, help="images simulated back to back per style")
    ap.add_argument("--styles", default="legacy,fast", help="comma-separated build styles (squeezehw.toolchain.verilator.STYLES)")
    ap.add_argument("--make-var", action="append", default=[], metavar="VAR=VALUE",
                    help="also measure the fast style with this make variable (e.g. OPT_FAST=-O2); repeatable")
    ap.add_argument("--json", metavar="FILE", help="write the results here as JSON")
    args = ap.parse_args(argv)
    from dataclasses import replace

    from squeezehw.toolchain import verilator
    styles = [verilator.STYLES[s] for s in args.styles.split(",")]
    if args.make_var:
        base = verilator.STYLES["fast"]
        styles.append(replace(base, name="fast " + " ".join(args.make_var),
                              make_vars=base.make_vars + tuple(args.make_var)))
    t0 = time.monotonic()
    model, fold, x, what = design(args)
    prepare = time.monotonic() - t0
    results = []
    with tempfile.TemporaryDirectory(prefix="sim_speed.", dir=REPO / "build") as td:
        for k, style in enumerate(styles):
            results.append(measure(style, model, fold, x, Path(td) / str(k)))
    base = results[0]
    out = {
        "design": what, "frames": len(x), "multipliers": fold.summary(model)["multipliers"],
        "machine": {"cpus": os.cpu_count(), "load_average_at_end": os.getloadavg()},
        "prepare_seconds": round(prepare, 1), "styles": results,
        "ratios_vs_" + base["style"]: {
            r["style"]: {
                "generation_and_build_wall": round(
                    (base["verilog_generation_seconds"] + base["build_seconds"])
                    / max(r["verilog_generation_seconds"] + r["build_seconds"], 1e-9), 2),
                "build_wall": round(base["build_seconds"] / max(r["build_seconds"], 1e-9), 2),
                "build_cpu": round(base["build_cpu_seconds"] / max(r["build_cpu_seconds"], 1e-9), 2),
                "sim_cycles_per_second": round(r["sim_cycles_per_second"] / base["sim_cycles_per_second"], 2),
                "sim_cycles_per_cpu_second": round(r["sim_cycles_per_cpu_second"] / base["sim_cycles_per_cpu_second"], 2),
                "sim_wall_whole_run": round(base["sim_seconds"] / max(r["sim_seconds"], 1e-9), 2),
            } for r in results[1:]},
    }
    text_out = json.dumps(out, indent=1)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text_out + "\n")
    print(text_out)
    return 0 if all(r["bit_exact"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
