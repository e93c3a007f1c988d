"""Golden model vs PyTorch float32: time per 224x224 SqueezeNet v1.1 frame, side by side.

Same images, same batch size, same thread count (``torch.set_num_threads`` and the BLAS
threads NumPy uses are both pinned with ``--threads``).  Random weights are enough: the work
does not depend on the values.  Prints one JSON object and a one-line summary.

    .venv/bin/python benchmarks/golden_speed.py --threads 1 --batch 8 --repeats 3
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)          # before numpy/torch load their BLAS
    import numpy as np
    import torch
    torch.set_num_threads(args.threads)
    from squeezehw.frontend.family import SQUEEZENET1_1, build_network
    from squeezehw.frontend.float_model import forward
    from squeezehw.quant import golden
    from squeezehw.quant.quantize import quantize
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
    from test_quantize import random_images, random_weights

    net = build_network(SQUEEZENET1_1)
    net = net.with_weights(random_weights(net, seed=0))
    x = random_images(args.batch, net, seed=1)
    model = quantize(net, x[:2], progress=False)

    def best(fn):
        fn()                                           # warm-up
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return min(times) / args.batch

    t_torch = best(lambda: forward(net, x, batch_size=args.batch))
    t_golden = best(lambda: golden.run(model, x))
    out = {"network": "squeezenet1_1 224x224", "batch": args.batch, "threads": args.threads,
           "torch_float32_s_per_frame": round(t_torch, 5), "golden_s_per_frame": round(t_golden, 5),
           "ratio": round(t_golden / t_torch, 2), "numpy": np.__version__, "torch": torch.__version__}
    print(json.dumps(out))
    print(f"golden {1000 * t_golden:.1f} ms/frame, torch {1000 * t_torch:.1f} ms/frame, "
          f"ratio {t_golden / t_torch:.2f}x", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
