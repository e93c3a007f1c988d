"""Where does 8-bit activation quantisation lose accuracy?  A label-free diagnostic.

Runs the float network with *fake-quantised* activations -- a tensor rounded and clipped onto the
8-bit grid the quantizer gives it (``range / 255`` steps after ReLU, ``range / 127`` for a
complex-bypass conv, the two expand convs of a Fire sharing one scale, exactly as
``squeezehw.quant.quantize``), everything else in float32 -- and compares its logits with the
float model's on the **calibration photos only** (no labels, no evaluation photos):

* ``agree``: top-1 agreement with the float model;
* ``kl``: mean KL(softmax(float) || softmax(fake-quant)) in millinats.

Weights stay float: the question is the activations' share of the loss (Deep Compression's own
shared values are kept within 2**-16 by ``--codebook keep``, so the golden model's weights are the
float ones to that precision).  Rows:

* ``all``: every tensor quantised, for each calibration rule (and 'mse' with the head clipped at
  its own error-minimising range instead of unclipped);
* ``only T``: only tensor T quantised (percentile ranges, or ``--base``'s): the loss each tensor
  causes alone;
* ``all but T``: every tensor quantised except T (float);
* ``golden``: the integer golden model itself (percentile, mse, mse + bias correction);
* ``pick``: every tensor quantised, each with the rule (percentile or mse) whose ``only`` row
  has the smaller KL (an output-aware choice, still on the calibration photos only).

    nice -n 10 .venv/bin/python benchmarks/activation_diagnostic.py            # DC v1.0, 100 photos
    nice -n 10 .venv/bin/python benchmarks/activation_diagnostic.py --arch v1.1

Writes ``benchmarks/activation_diagnostic_<model>.json`` and prints a table.
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
MODELS = {"dc1.0": ("squeezenet1_0_deep_compression.npz", "squeezenet1_0"),
          "v1.1": ("squeezenet1_1.npz", "squeezenet1_1")}


# the quantizer's 8-bit points, as the product's search calibration enumerates them
from squeezehw.quant.search_calibration import fake_quant_logits, kl_mnat, log_softmax, quant_points  # noqa: E402


def head_mse_range(net, calib) -> float:
    """The head's range by the per-tensor rule that 'mse' calibration does *not* use for the head."""
    from squeezehw.frontend.float_model import forward
    from squeezehw.quant.quantize import MSE_BINS, mse_range
    head = net.layers[-1].name
    t = np.abs(forward(net, calib, trace=True, batch_size=25)[1][head]).astype(np.float64)
    top = float(t.max())
    t = t[t != 0]
    hist = np.bincount(np.minimum((t * (MSE_BINS / top)).astype(np.int64), MSE_BINS - 1), minlength=MSE_BINS)
    return mse_range(hist, top, 255)


def compare(ref: np.ndarray, logits: np.ndarray) -> dict:
    return {"agree": float((ref.argmax(1) == logits.argmax(1)).mean()),
            "kl_mnat": kl_mnat(log_softmax(ref), logits)}


def out_path(args) -> Path:
    return ROOT / "benchmarks" / f"activation_diagnostic_{args.arch}.json"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", choices=sorted(MODELS), default="dc1.0")
    ap.add_argument("--rows", default="all,only,allbut,golden",
                    help="comma-separated: all, only, allbut, golden, pick (needs the only rows "
                         "of both rules in the JSON)")
    ap.add_argument("--base", choices=("percentile", "max", "mse"), default="percentile",
                    help="calibration rule of the 'only' and 'all but' rows")
    args = ap.parse_args()
    if not DATA.is_dir():
        print(f"no ImageNet data at {DATA} (see its README)", file=sys.stderr)
        return 2
    from squeezehw.frontend.float_model import forward
    from squeezehw.frontend.images import list_image_folder, load_images
    from squeezehw.frontend.importer import load_network
    from squeezehw.quant.quantize import calibration_ranges
    wfile, arch = MODELS[args.arch]
    net = load_network(arch, DATA / wfile)
    files, _, _ = list_image_folder(DATA / "sample")
    calib, _, _ = load_images(files[::10], height=net.height, width=net.width, channels=net.in_ch,
                              resize=net.resize, progress=False)
    ref = forward(net, calib, batch_size=25)[0]
    ranges = {c: calibration_ranges(net, calib, calibration=c, progress=False)
              for c in ("percentile", "max", "mse")}
    pts = quant_points(net)
    names = {p[0] for p in pts}
    rows = []

    def row(label, rng, quantised):
        t0 = time.time()
        r = {"row": label, **compare(ref, fake_quant_logits(net, calib, rng, quantised)),
             "seconds": round(time.time() - t0, 1)}
        print(f"{label:<44} agree {r['agree']:.2f}  KL {r['kl_mnat']:8.2f} mnat", file=sys.stderr)
        rows.append(r)

    todo = args.rows.split(",")
    if "all" in todo:
        for c in ("percentile", "max", "mse"):
            row(f"all, {c}", ranges[c], names)
        head = pts[-1][0]
        row("all, mse, head also at its mse range", {**ranges["mse"], head: head_mse_range(net, calib)}, names)
        row("all, percentile, head at max", {**ranges["percentile"], head: ranges["max"][head]}, names)
    if "golden" in todo:            # the integer model itself (DC v1.0: its own shared values kept)
        from squeezehw.quant import golden
        from squeezehw.quant.compression import CodebookSpec
        from squeezehw.quant.quantize import quantize
        spec = CodebookSpec(index_bits=8, mode="keep", refine="none") if args.arch == "dc1.0" else None
        for c, bc in (("percentile", False), ("mse", False), ("mse", True)):
            t0 = time.time()
            m = quantize(net, calib, calibration=c, ranges=ranges[c], codebook=spec, bias_correction=bc,
                         progress=False)
            lg = np.concatenate([golden.run(m, calib[s:s + 10]).logits_float(m) for s in range(0, len(calib), 10)])
            label = f"golden, {c}" + (", bias correction" if bc else "")
            r = {"row": label, **compare(ref, lg), "seconds": round(time.time() - t0, 1)}
            print(f"{label:<44} agree {r['agree']:.2f}  KL {r['kl_mnat']:8.2f} mnat", file=sys.stderr)
            rows.append(r)
    if "pick" in todo:              # per tensor the rule whose 'only' row (earlier runs) errs least
        prev = {r["row"]: r["kl_mnat"] for r in json.loads(out_path(args).read_text())["rows"]}
        picked = {}
        for p, keys, _ in pts:
            c = min(("percentile", "mse"), key=lambda c: prev[f"only {p}" + ("" if c == "percentile" else f", {c}")])
            picked.update({k: ranges[c][k] for k in keys})
            print(f"  {p}: {c}", file=sys.stderr)
        row("all, per tensor the better of percentile/mse alone", picked, names)
    tag = "" if args.base == "percentile" else f", {args.base}"
    if "only" in todo:
        for p, _, _ in pts:
            row(f"only {p}{tag}", ranges[args.base], {p})
    if "allbut" in todo:
        for p, _, _ in pts:
            row(f"all but {p}{tag}", ranges[args.base], names - {p})
    per_point = {p: {c: max(ranges[c][k] for k in keys) for c in ranges} for p, keys, _ in pts}
    out = out_path(args)
    prev = json.loads(out.read_text())["rows"] if out.is_file() else []
    done = {r["row"] for r in rows}
    rows = [r for r in prev if r["row"] not in done] + rows
    out.write_text(json.dumps({"model": args.arch, "photos": "100 calibration photos (every 10th sample photo)",
                               "ranges": per_point, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
