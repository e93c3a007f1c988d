"""Full-size benchmark: ImageNet SqueezeNet v1.1 at 224x224 in cycle-accurate simulation.

Quantizes the real v1.1 weights from ../shared/data/imagenet to int8 (calibrated on every 10th
sample photo), folds the design automatically for a multiplier budget, builds it, simulates real
photos back to back in Verilator (not used for calibration), and checks every logit against the
golden model.  Prints one JSON object with --json.

    python benchmarks/fullsize.py --multipliers 2000 --frames 2 --json
    python benchmarks/fullsize.py --multipliers 150 --frames 2 --json     # ECP5-85F-sized array

Not a CI test: the Verilator build and the simulation take minutes.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "imagenet"


def calibration_photos(net, progress: bool):
    """Every 10th sample photo (the calibration pool of every ImageNet benchmark), at ``net``'s input."""
    from squeezehw.frontend.images import list_image_folder, load_images
    files, _, _ = list_image_folder(DATA / "sample")
    calib, _, _ = load_images(files[::10], height=net.height, width=net.width, channels=net.in_ch,
                              resize=net.resize, progress=progress)
    return calib


def quantized_v11(progress: bool):
    from squeezehw.frontend.importer import load_network
    from squeezehw.outputs import cache_dir
    from squeezehw.quant.intmodel import IntModel
    from squeezehw.quant.quantize import quantize
    cache = cache_dir() / "bench-sq11-w8.npz"
    if cache.is_file():
        return IntModel.load(cache)
    net = load_network("squeezenet1_1", DATA / "squeezenet1_1.npz")
    model = quantize(net, calibration_photos(net, progress), w_bits=8, progress=progress,
                     source="squeezenet1_1.npz")
    cache.parent.mkdir(parents=True, exist_ok=True)
    model.save(cache)
    return model


def ramb36(model, folding) -> int:
    from squeezehw.plan.lowering import lower
    from squeezehw.plan.resources import estimate
    return estimate(lower(model, folding), "xilinx36")["block_ram"]


def weight_ramb36(model, folding) -> int:
    """RAMB36 blocks for the weight memories alone (width pe*simd*8, depth NF*SF each)."""
    from squeezehw.plan.folding import stages
    from squeezehw.plan.resources import blocks_for
    total = 0
    for s in stages(model):
        if s.kind != "conv":
            continue
        f = folding[s.name]
        total += blocks_for(f.pe * f.simd * s.w_bits, (s.out_ch // f.pe) * (s.vector // f.simd), "xilinx36")
    return total


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--multipliers", type=int, default=2000, help="multiplier budget for auto folding")
    ap.add_argument("--speed-slack", type=float, default=2.0, metavar="PCT",
                    help="auto folding: frame rate (%%) it may give up for higher MAC efficiency (default 2)")
    ap.add_argument("--frames", type=int, default=2, help="photos simulated back to back (>= 2)")
    ap.add_argument("--clock", type=float, default=200.0, help="clock (MHz) for the frames/s figure")
    ap.add_argument("--probes", action="store_true",
                    help="build with per-stream transfer/blocked counters (profiling at Verilator speed)")
    ap.add_argument("--style", choices=("fast", "legacy"), default=None,
                    help="Verilator build style (default fast; legacy: memory contents inline, stimulus "
                         "loaded from Python, as before; benchmarks/sim_speed.py compares the two)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if not (DATA / "squeezenet1_1.npz").is_file():
        print(f"benchmark needs {DATA} (real ImageNet weights and photos); not found", file=sys.stderr)
        return 2
    from squeezehw.sim.simulate import simulate_frames

    from squeezehw.frontend.images import list_image_folder, load_images
    from squeezehw.plan.folding import auto_fold
    from squeezehw.toolchain.verilator import STYLES
    progress = not args.json
    t0 = time.monotonic()
    model = quantized_v11(progress)
    fold = auto_fold(model, max_multipliers=args.multipliers, speed_slack=args.speed_slack / 100)
    files, labels, _ = list_image_folder(DATA / "sample")
    pick = [i for i in range(len(files)) if i % 10 == 5][:args.frames]     # not calibration photos
    x, _, _ = load_images([files[i] for i in pick], height=224, width=224, channels=3, resize=256,
                          progress=False)
    prep = time.monotonic() - t0
    rep = simulate_frames(model, fold, x, progress=True, probes=args.probes,
                          style=STYLES[args.style] if args.style else None)
    weight_bytes = sum(c.weight_bytes for c in model.convs())
    out = {
        "model": "squeezenet1_1 int8, 224x224, 1000 classes", "budget_multipliers": args.multipliers,
        "speed_slack_pct": args.speed_slack,
        "frames": rep.frames, "bit_exact": rep.bit_exact, "mismatches": rep.mismatches[:5],
        "cycles_per_frame": rep.cycles_per_frame, "expected_cycles_per_frame": rep.expected_cycles_per_frame,
        "latency_cycles": rep.latency_cycles, "multipliers": rep.multipliers,
        "macs_per_frame": rep.macs_per_frame, "mac_efficiency": rep.mac_efficiency,
        "clock_mhz": args.clock,
        "fps_at_clock": args.clock * 1e6 / rep.cycles_per_frame if rep.cycles_per_frame else None,
        "weight_bytes": weight_bytes, "weight_ramb36": weight_ramb36(model, fold),
        "all_memories_ramb36": ramb36(model, fold),
        "build_style": rep.build_style,
        "verilator_build_seconds": rep.build_seconds, "verilator_build_cpu_seconds": rep.build_cpu_seconds,
        "build_cached": rep.build_cached,
        "simulation_seconds": rep.sim_seconds, "sim_cycles_per_second": rep.sim_cycles_per_second,
        "sim_cycles_per_cpu_second": rep.sim_cycles_per_cpu_second,
        "stimulus_load_seconds": rep.stimulus_load_seconds,
        "prepare_seconds": round(prep, 1), "frame_intervals": rep.frame_intervals,
        "streams": rep.streams, "classes": rep.classes,
        "labels": [int(labels[i]) for i in pick],
        "folding": {k: [v.simd, v.pe] for k, v in fold.layers.items()},
    }
    print(json.dumps(out, indent=1) if args.json else
          "\n".join(f"{k}: {v}" for k, v in out.items() if k != "folding"))
    return 0 if rep.bit_exact else 1


if __name__ == "__main__":
    sys.exit(main())

