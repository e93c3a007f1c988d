"""A small random network with sparse, codebook-shared weights in Verilator: dense vs compressed MVUs.

Builds the random model of tests/test_cycle_model.py (seed 11, 10x10, two Fire modules with both
bypass kinds), replaces every conv's weights by a sparse draw from a per-layer codebook of 15
non-zero values (``--density`` non-zero), encodes every conv (squeezehw.quant.sparse_weights.encode_model,
format chosen per layer) and simulates the same frames twice in Verilator (smooth traffic): with the
dense weight memories and with every MVU reading through a WeightDecoder.  Prints JSON: bit-exact
verdicts against the golden model, cycles per frame (measured and the cost model), latency, and per
layer the chosen format, word W, buffer C, bits per vector (encoded vs dense).

    .venv/bin/python benchmarks/compressed_network.py --frames 6 --json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def sparse_random_model(seed: int = 11, density: float = 0.35, entries: int = 15):
    from squeezehw.quant.random_model import random_model
    rng = np.random.default_rng(seed)
    model = random_model(rng, size=10, classes=6)
    for c in model.convs():
        cb = [v for v in rng.choice(np.arange(-100, 101), entries + 1, replace=False) if v != 0][:entries]
        c.weight[...] = np.where(rng.random(c.weight.shape) < density, rng.choice(cb, c.weight.shape), 0)
    return model, rng


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=6)
    ap.add_argument("--density", type=float, default=0.35)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    from squeezehw.sim.simulate import simulate_frames

    from squeezehw.plan.folding import default_folding
    from squeezehw.quant.sparse_weights import encode_model
    from squeezehw.toolchain.verilator import SimTraffic
    model, rng = sparse_random_model(density=args.density)
    fold = default_folding(model)
    codes = encode_model(model, fold)
    x = rng.integers(0, 256, (args.frames, 1, 10, 10), dtype=np.uint8)
    runs = {}
    for label, wc in (("dense", None), ("compressed", codes)):
        rep = simulate_frames(model, fold, x, traffic=SimTraffic(), progress=False, weight_codes=wc)
        runs[label] = {"bit_exact": rep.bit_exact, "cycles_per_frame": rep.cycles_per_frame,
                       "cost_model_cycles_per_frame": rep.expected_cycles_per_frame,
                       "frame_intervals": rep.frame_intervals, "latency_cycles": rep.latency_cycles,
                       "mac_efficiency": rep.mac_efficiency, "mismatches": rep.mismatches[:3]}
    layers = {n: {"format": p.stream.fmt, "k": p.stream.k, "word_bits": p.word_bits,
                  "buffer_bits": p.buffer_bits, "depth": p.depth,
                  "bits_per_vector": round(p.bits_per_vector, 2),
                  "dense_bits_per_vector": p.stream.lanes * 8, "warmup_stalls": p.pace.warmup_stalls}
              for n, p in codes.items()}
    out = {"benchmark": "compressed_network", "model": model.name, "frames": args.frames,
           "density": args.density, "runs": runs, "layers": layers}
    print(json.dumps(out, indent=1) if args.json else out)
    ok = all(r["bit_exact"] for r in runs.values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
