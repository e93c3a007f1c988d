"""Soak test: the default model, many frames back to back in Verilator under rough traffic.

Plays the default model's held-out MNIST digits (then, beyond 1,000, seeded random images)
through the accelerator in one Verilator run, with random input gaps and random output stalls
(``SimTraffic.rough``: the same traffic as ``squeezehw sim --traffic rough``), and compares every
logit and class of every frame with the golden model (``squeezehw.sim.simulate.simulate_frames``).
Prints one JSON object: frames, logits compared, mismatching frames, cycles, wall time.  Exit
status 0 only when there are zero mismatches.

    nice -n 10 python benchmarks/soak.py --frames 1000 --json-out docs/results/soak_default_1000.json

Not a CI test: building the 1,024-frame harness and simulating ~30 million cycles take minutes.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def soak_images(frames: int) -> tuple[np.ndarray, str]:
    from squeezehw.quant.default_model import TEST_PER_CLASS, default_eval_images
    held_out = 10 * TEST_PER_CLASS
    x, _ = default_eval_images(min(frames, held_out))
    if frames <= held_out:
        return x, f"first {frames} held-out MNIST digits"
    extra = np.random.default_rng(0).integers(0, 256, size=(frames - held_out, *x.shape[1:]), dtype=np.uint8)
    return np.concatenate([x, extra]), f"{held_out} held-out MNIST digits + {frames - held_out} random images (seed 0)"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=1000, help="frames back to back in one run (default 1000)")
    ap.add_argument("--seed", type=int, default=1, help="traffic seed (default 1)")
    ap.add_argument("--json-out", metavar="FILE", help="also write the JSON result to FILE")
    args = ap.parse_args(argv)
    if args.frames < 2:
        ap.error("--frames must be at least 2")

    from squeezehw.sim.simulate import simulate_frames

    from squeezehw.pipeline import default_int_model
    from squeezehw.plan.folding import default_folding
    from squeezehw.toolchain.verilator import SimTraffic

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                            text=True).stdout.strip() or None          # at the start: what is measured
    model = default_int_model()
    fold = default_folding(model)
    images, what = soak_images(args.frames)
    traffic = SimTraffic.rough(args.seed)
    t0 = time.perf_counter()
    rep = simulate_frames(model, fold, images, traffic=traffic)
    wall = time.perf_counter() - t0
    result = {
        "benchmark": "soak", "commit": commit, "model": model.name, "images": what,
        "frames": rep.frames, "logits_compared": rep.frames * model.classes,
        "classes_compared": rep.frames, "mismatches": len(rep.mismatches),
        "first_mismatches": rep.mismatches[:10], "bit_exact": rep.bit_exact,
        "traffic": rep.traffic, "total_cycles": rep.total_cycles,
        "cycles_per_frame": rep.cycles_per_frame,
        "expected_cycles_per_frame_smooth": rep.expected_cycles_per_frame,
        "min_frame_interval": min(rep.frame_intervals) if rep.frame_intervals else None,
        "max_frame_interval": max(rep.frame_intervals) if rep.frame_intervals else None,
        "latency_cycles": rep.latency_cycles,
        "build_seconds": round(rep.build_seconds, 1), "build_cached": rep.build_cached,
        "sim_seconds": round(rep.sim_seconds, 1), "wall_seconds": round(wall, 1),
        "sim_cycles_per_second": round(rep.sim_cycles_per_second),
    }
    text = json.dumps(result, indent=1)
    print(text)
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(text + "\n")
    return 0 if rep.bit_exact else 1


if __name__ == "__main__":
    sys.exit(main())
