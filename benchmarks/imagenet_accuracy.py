"""Float vs integer ImageNet accuracy of SqueezeNet v1.1 and Deep-Compression v1.0 on the 1000 photos.

Calibration and evaluation are disjoint: the photos are listed in ImageFolder order (one per
class) and every 10th one (indices 0, 10, 20, ...: 100 photos of 100 different classes) is the
calibration pool; the other 900 are the evaluation set.  Accuracy on all 1000 is reported too
(for comparison with the data set's README), but the calibration photos are among those.

Writes ``benchmarks/imagenet_accuracy.json`` and ``benchmarks/imagenet_accuracy.md``.

    .venv/bin/python benchmarks/imagenet_accuracy.py            # ~15-20 minutes on 2 cores
    .venv/bin/python benchmarks/imagenet_accuracy.py --quick    # 200 photos, fewer configs
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "imagenet"

# (label, weights file, arch, w_bits, calibration, percentile, calibration images)
CONFIGS = [
    ("v1.1 int8, percentile 99.99", "squeezenet1_1.npz", "squeezenet1_1", 8, "percentile", 99.99, 100),
    ("v1.1 int8, max", "squeezenet1_1.npz", "squeezenet1_1", 8, "max", 100.0, 100),
    ("v1.1 6-bit weights", "squeezenet1_1.npz", "squeezenet1_1", 6, "percentile", 99.99, 100),
    ("v1.1 4-bit weights", "squeezenet1_1.npz", "squeezenet1_1", 4, "percentile", 99.99, 100),
    ("v1.0 Deep Compression int8", "squeezenet1_0_deep_compression.npz", "squeezenet1_0", 8, "percentile", 99.99, 100),
    ("v1.0 Deep Compression 6-bit", "squeezenet1_0_deep_compression.npz", "squeezenet1_0", 6, "percentile", 99.99, 100),
    ("v1.1 int8, percentile 99.9", "squeezenet1_1.npz", "squeezenet1_1", 8, "percentile", 99.9, 100),
    ("v1.1 int8, percentile 99.99, 32 calib", "squeezenet1_1.npz", "squeezenet1_1", 8, "percentile", 99.99, 32),
]


def logits_of(fn, x, batch, desc):
    from tqdm import tqdm
    out = []
    for s in tqdm(range(0, len(x), batch), desc=desc, unit="batch", file=sys.stderr):
        out.append(fn(x[s:s + batch]))
    return np.concatenate(out)


def acc(logits, labels, idx):
    from squeezehw.quant.evaluate import topk_correct
    return {"top1": float(topk_correct(logits[idx], labels[idx], 1).mean()),
            "top5": float(topk_correct(logits[idx], labels[idx], 5).mean())}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="200 photos and three configs (a smoke run)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "imagenet_accuracy"))
    args = ap.parse_args()
    if not DATA.is_dir():
        print(f"no ImageNet data at {DATA}; see its README", file=sys.stderr)
        return 2
    from squeezehw.frontend.float_model import forward
    from squeezehw.frontend.images import load_image_folder
    from squeezehw.frontend.importer import load_network
    from squeezehw.plan.memory import memory_report
    from squeezehw.quant import golden
    from squeezehw.quant.quantize import calibration_ranges, quantize

    s = load_image_folder(DATA / "sample", height=224, width=224, channels=3, resize=256)
    x, y = s.images, s.labels
    configs = CONFIGS
    if args.quick:
        x, y = x[:200], y[:200]
        configs = [CONFIGS[0], CONFIGS[3], CONFIGS[4]]
    n = len(x)
    calib_pool = np.arange(0, n, 10)
    held_out = np.setdiff1d(np.arange(n), calib_pool)
    float_cache, range_cache, rows = {}, {}, []
    for label, wfile, arch, bits, cal, pct, ncal in configs:
        t0 = time.time()
        net = load_network(arch, DATA / wfile)
        if wfile not in float_cache:
            float_cache[wfile] = logits_of(lambda b: forward(net, b, batch_size=len(b))[0], x, 25,
                                           f"float {arch}")
        flog = float_cache[wfile]
        cal_idx = calib_pool[np.unique(np.linspace(0, len(calib_pool) - 1, ncal).round().astype(int))]
        key = (wfile, cal, pct, ncal)        # ranges do not depend on the weight bits: reuse them
        if key not in range_cache:
            range_cache[key] = calibration_ranges(net, x[cal_idx], calibration=cal, percentile=pct)
        model = quantize(net, x[cal_idx], w_bits=bits, calibration=cal, percentile=pct,
                         ranges=range_cache[key])
        qlog = logits_of(lambda b: golden.run(model, b).logits, x, 25, f"golden {label}")
        mem = memory_report(model)
        row = {"config": label, "arch": arch, "weights": wfile, "w_bits": bits, "calibration": cal,
               "percentile": pct if cal == "percentile" else None, "calib_images": int(len(cal_idx)),
               "weight_bytes": mem["weight_bytes"], "param_bytes": mem["total_bytes"],
               "held_out_images": int(len(held_out)),
               "float_held_out": acc(flog, y, held_out), "quantized_held_out": acc(qlog, y, held_out),
               "float_all": acc(flog, y, np.arange(n)), "quantized_all": acc(qlog, y, np.arange(n)),
               "top1_agreement_held_out": float((flog[held_out].argmax(1) ==
                                                 np.argsort(-qlog[held_out], 1, kind="stable")[:, 0]).mean()),
               "seconds": round(time.time() - t0, 1)}
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
        write(args.out, n, held_out, rows)          # after every row: a long run keeps its results
    return 0


def write(prefix, n, held_out, rows):
    out = {"images": n, "calibration_pool": "every 10th photo (indices 0, 10, ...)",
           "held_out": f"the other {len(held_out)} photos", "rows": rows}
    Path(prefix + ".json").write_text(json.dumps(out, indent=2) + "\n")
    md = [f"ImageNet sample ({n} photos, one per class). Calibration: every 10th photo; "
          f"accuracy on the {len(held_out)} held-out photos (all {n} in brackets).", "",
          "| config | weight bytes | param bytes | float top-1 | int top-1 | float top-5 | int top-5 | top-1 agree |",
          "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        f, q, fa, qa = r["float_held_out"], r["quantized_held_out"], r["float_all"], r["quantized_all"]
        md.append(f"| {r['config']} ({r['calib_images']} calib) | {r['weight_bytes']:,} | {r['param_bytes']:,} | "
                  f"{f['top1']:.3f} ({fa['top1']:.3f}) | {q['top1']:.3f} ({qa['top1']:.3f}) | "
                  f"{f['top5']:.3f} ({fa['top5']:.3f}) | {q['top5']:.3f} ({qa['top5']:.3f}) | "
                  f"{r['top1_agreement_held_out']:.3f} |")
    Path(prefix + ".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    sys.exit(main())
