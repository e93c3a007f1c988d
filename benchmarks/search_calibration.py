"""Time and choices of ``calibration='search'`` on Deep Compression v1.0 (100 calibration photos =
every 10th sample photo, the split of benchmarks/compression_accuracy.py), on one CPU thread
(torch.set_num_threads(1); CPU seconds are reported next to wall seconds, the machine being shared).

    nice -n 10 .venv/bin/python benchmarks/search_calibration.py

Writes ``benchmarks/search_calibration_dc1.0.json``: seconds (the three base calibrations, the
search), and per tensor the candidates' KL to the float logits (millinats) and the chosen one.
Label-free: no held-out photo and no label is read.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "imagenet"


def main() -> int:
    if not DATA.is_dir():
        print(f"no ImageNet data at {DATA} (see its README)", file=sys.stderr)
        return 2
    import torch
    torch.set_num_threads(1)
    from squeezehw.frontend.images import list_image_folder, load_images
    from squeezehw.frontend.importer import load_network
    from squeezehw.quant.quantize import calibration_ranges
    from squeezehw.quant.search_calibration import search_ranges
    net = load_network("squeezenet1_0", DATA / "squeezenet1_0_deep_compression.npz")
    files, _, _ = list_image_folder(DATA / "sample")
    calib, _, _ = load_images(files[::10], height=net.height, width=net.width, channels=net.in_ch,
                              resize=net.resize, progress=False)
    t0, c0 = time.time(), time.process_time()
    base = {c: calibration_ranges(net, calib, calibration=c, progress=False) for c in ("mse", "percentile", "max")}
    t1, c1 = time.time(), time.process_time()
    log = []
    search_ranges(net, calib, base=base, progress=False, log=log)
    t2, c2 = time.time(), time.process_time()
    for e in log:
        print(f"{e['point']:<24} {e['chosen']:<11} " + "  ".join(f"{k} {v:.2f}" for k, v in e["kl_mnat"].items()),
              file=sys.stderr)
    out = {"model": "dc1.0", "photos": int(len(calib)), "torch_threads": 1,
           "seconds_base_calibrations": round(t1 - t0, 1), "seconds_search": round(t2 - t1, 1),
           "cpu_seconds_base_calibrations": round(c1 - c0, 1), "cpu_seconds_search": round(c2 - c1, 1),
           "tensors": log}
    (ROOT / "benchmarks" / "search_calibration_dc1.0.json").write_text(json.dumps(out, indent=2) + "\n")
    print(f"base calibrations {t1 - t0:.0f} s ({c1 - c0:.0f} CPU s), search {t2 - t1:.0f} s "
          f"({c2 - c1:.0f} CPU s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
