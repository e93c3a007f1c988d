"""Accuracy and size of shared-weight (codebook) models next to per-channel linear quantisation.

For SqueezeNet v1.1, Deep Compression v1.0 (ImageNet, the 1000 sample photos) and the built-in
default model (MNIST): top-1/top-5 of the **integer golden model** (bit-exact with the hardware) for
k-bit codebooks (k-means per layer + GPTQ-style rounding, or a Deep Compression model's own shared
values) and for k-bit per-channel linear weights, with the encoded weight stream, codebook and
entropy-coded file sizes (docs/compression.md).

The split is benchmarks/imagenet_accuracy.py's: every 10th photo (100 photos) is the calibration
pool (activation ranges *and* the layer statistics of the GPTQ pass); accuracy is measured on the
other 900.  The default model calibrates on its first 512 MNIST training digits and is measured on
its 1,000 held-out digits.

Writes ``benchmarks/compression_accuracy.json`` and ``.md`` after every row; rows already in the
JSON are kept (a later run with ``--only`` adds or replaces rows), so the table can be built in parts;
runs in parallel need their own ``--out`` and ``--merge`` afterwards.

    nice -n 10 .venv/bin/python benchmarks/compression_accuracy.py --only bars   # the quality bars (mse calibration)
    nice -n 10 .venv/bin/python benchmarks/compression_accuracy.py --only v1.1   # rows whose label has 'v1.1'
    nice -n 10 .venv/bin/python benchmarks/compression_accuracy.py --only "search calibration"  # calibration='search'
    nice -n 10 .venv/bin/python benchmarks/compression_accuracy.py               # every row (hours on 2 shared cores)
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

DC, V11, DEFAULT = "dc1.0", "v1.1", "default"
MODELS = {DC: ("squeezenet1_0_deep_compression.npz", "squeezenet1_0"),
          V11: ("squeezenet1_1.npz", "squeezenet1_1"), DEFAULT: (None, None)}


def configs():
    """(label, model, kind, k, per_channel) in the order they run: the quality bars first."""
    rows = [("DC v1.0, own 8-bit shared values", DC, "keep", 8, False),
            ("DC v1.0, own 8-bit shared values, max calibration", DC, "keep-max", 8, False),
            ("DC v1.0, own 8-bit shared values, mse calibration", DC, "keep-mse", 8, False),
            ("DC v1.0, own 8-bit shared values, mse calibration + bias correction", DC, "keep-mse-bc", 8, False),
            ("DC v1.0, own 8-bit shared values, per-tensor pick of percentile/mse", DC, "keep-pick", 8, False),
            ("DC v1.0, own 8-bit shared values, search calibration", DC, "keep-search", 8, False),
            ("DC v1.0, 6-bit codebook + GPTQ", DC, "cluster", 6, False),
            ("DC v1.0, 6-bit codebook + GPTQ, mse calibration", DC, "cluster-mse", 6, False),
            ("DC v1.0, 6-bit codebook + GPTQ, mse calibration + bias correction", DC, "cluster-mse-bc", 6, False),
            ("DC v1.0, 6-bit codebook + GPTQ, per-tensor pick of percentile/mse", DC, "cluster-pick", 6, False),
            ("DC v1.0, 6-bit codebook + GPTQ, search calibration", DC, "cluster-search", 6, False),
            # the Gowin moonshot's candidate for fewer BSRAMs (docs/boards.md)
            ("DC v1.0, 5-bit codebook + GPTQ, search calibration", DC, "cluster-search", 5, False),
            ("DC v1.0, 8-bit linear per channel", DC, "linear", 8, False)]
    for k in (6, 4, 5, 8):
        rows.append((f"v1.1, {k}-bit codebook + GPTQ", V11, "cluster", k, False))
    for k in (5, 4, 6, 8):
        rows.append((f"v1.1, {k}-bit linear per channel", V11, "linear", k, False))
    for k in (4, 5, 8):
        rows.append((f"DC v1.0, {k}-bit codebook + GPTQ", DC, "cluster", k, False))
    for k in (4, 5, 6):
        rows.append((f"DC v1.0, {k}-bit linear per channel", DC, "linear", k, False))
    rows.append(("DC v1.0, 6-bit codebook, nearest (no GPTQ)", DC, "nearest", 6, False))
    for k in (4, 5, 6, 8):
        rows.append((f"default, {k}-bit codebook + GPTQ", DEFAULT, "cluster", k, False))
        rows.append((f"default, {k}-bit linear per channel", DEFAULT, "linear", k, False))
    rows.append(("default, 8-bit linear per channel, mse calibration", DEFAULT, "linear-mse", 8, False))
    rows.append(("v1.1, 8-bit linear per channel, mse calibration", V11, "linear-mse", 8, False))
    rows.append(("default, 8-bit linear per channel, search calibration", DEFAULT, "linear-search", 8, False))
    return rows


BARS = {"DC v1.0, own 8-bit shared values, mse calibration", "DC v1.0, 6-bit codebook + GPTQ, mse calibration"}


def acc(logits, labels):
    from squeezehw.quant.evaluate import topk_correct
    k5 = min(5, logits.shape[1])
    return {"top1": float(topk_correct(logits, labels, 1).mean()),
            "top5": float(topk_correct(logits, labels, k5).mean())}


def batched(fn, x, batch=25):
    return np.concatenate([fn(x[s:s + batch]) for s in range(0, len(x), batch)])


class Workload:
    """A float network with its calibration and evaluation images, and cached statistics."""

    def __init__(self, key, photos, limit, shard=None):
        from squeezehw.frontend.importer import load_network
        if key == DEFAULT:
            from squeezehw.quant.default_model import load_default_network, mnist_split
            self.net = load_default_network()
            tx, _, ex, ey = mnist_split()
            self.calib, self.x, self.y = tx[:512], ex, ey
            self.where = "MNIST: 512 training digits calibrate, 1,000 held-out digits"
        else:
            wfile, arch = MODELS[key]
            self.net = load_network(arch, DATA / wfile)
            x, y = photos
            calib_idx = np.arange(0, len(x), 10)
            held = np.setdiff1d(np.arange(len(x)), calib_idx)
            self.calib, self.x, self.y = x[calib_idx], x[held], y[held]
            self.where = f"ImageNet sample: {len(calib_idx)} calibration photos, {len(held)} held out"
        if limit:
            self.x, self.y = self.x[:limit], self.y[:limit]
        if shard:                   # (i, n): every n-th evaluation image from the i-th
            self.x, self.y = self.x[shard[0]::shard[1]], self.y[shard[0]::shard[1]]
        self._ranges, self._hessians, self._float = {}, None, None
        self.search_log, self.search_seconds = [], None

    def ranges(self, calibration="percentile"):
        from squeezehw.quant.quantize import calibration_ranges
        if calibration == "pick":
            return self.picked_ranges()
        if calibration not in self._ranges:
            t0 = time.time()
            self._ranges[calibration] = calibration_ranges(
                self.net, self.calib, calibration=calibration,
                search_log=self.search_log if calibration == "search" else None)
            if calibration == "search":         # (includes its mse, percentile and max passes)
                self.search_seconds = round(time.time() - t0, 1)
        return self._ranges[calibration]

    def picked_ranges(self):
        """Per quantised tensor, the percentile or the mse range, whichever gave the smaller KL
        from the float model when that tensor alone was quantised on the calibration photos
        (benchmarks/activation_diagnostic.py --rows only and --rows only --base mse; no labels)."""
        from activation_diagnostic import quant_points
        diag = ROOT / "benchmarks" / "activation_diagnostic_dc1.0.json"
        kl = {r["row"]: r["kl_mnat"] for r in json.loads(diag.read_text())["rows"]}
        out = {}
        for p, keys, _ in quant_points(self.net):
            c = min(("percentile", "mse"), key=lambda c: kl[f"only {p}" + ("" if c == "percentile" else f", {c}")])
            out.update({k: self.ranges(c)[k] for k in keys})
        return {**self.ranges("mse"), **out}

    @property
    def hessians(self):
        from squeezehw.quant.compression import layer_hessians
        if self._hessians is None:
            self._hessians = layer_hessians(self.net, self.calib)
        return self._hessians

    @property
    def float_acc(self):
        from squeezehw.frontend.float_model import forward
        if self._float is None:
            self._float = acc(batched(lambda b: forward(self.net, b, batch_size=len(b))[0], self.x), self.y)
        return self._float


def run_config(w: Workload, label, kind, k, per_channel):
    from squeezehw.plan.memory import memory_report
    from squeezehw.quant import golden
    from squeezehw.quant.compression import CodebookSpec, compression_summary
    from squeezehw.quant.quantize import quantize
    t0 = time.time()
    spec = None
    # 'keep-mse-bc': codebook keep, mse calibration, bias correction
    kind, calibration, *extra = kind.split("-") + ([] if "-" in kind else ["percentile"])
    bias_correction = extra == ["bc"]
    if kind != "linear":
        spec = CodebookSpec(index_bits=k, mode="keep" if kind == "keep" else "cluster",
                            per_channel=per_channel, refine="gptq" if kind == "cluster" else "none")
    model = quantize(w.net, w.calib, w_bits=k if kind == "linear" else 8, codebook=spec,
                     calibration="mse" if calibration == "pick" else calibration, ranges=w.ranges(calibration),
                     hessians=w.hessians if kind == "cluster" else None, progress=False,
                     bias_correction=bias_correction)
    t_quant = time.time() - t0
    qacc = acc(batched(lambda b: golden.run(model, b).logits, w.x), w.y)
    mem = memory_report(model)
    row = {"config": label, "kind": kind, "k": k, "per_channel_codebook": per_channel,
           "calibration": calibration, "bias_correction": bias_correction,
           "images": int(len(w.x)), "data": w.where, "float": w.float_acc, "integer": qacc,
           "weight_bytes": mem["weight_bytes"], "param_bytes": mem["total_bytes"],
           "max_acc_bits": max(c.acc_bits for c in model.convs()),
           "seconds_quantize": round(t_quant, 1), "seconds": round(time.time() - t0, 1)}
    if calibration == "search":
        row["search"] = {e["point"]: e["chosen"] for e in w.search_log}
        row["seconds_search"] = w.search_seconds
    if spec is not None:
        s = compression_summary(model)
        row.update({"entry_bits": spec.bits, "stream_bytes": s["stream_bytes"],
                    "codebook_bytes": s["codebook_bytes"], "file_bytes": s["file_bytes"],
                    "encodings": {n: f"{c['encoding']}/{c['codebooks']}x{c['entries']}"
                                  for n, c in s["convs"].items()}})
    return row


def write(prefix: str, rows: list):
    order = [c[0] for c in configs()]
    rows = sorted(rows, key=lambda r: order.index(r["config"]) if r["config"] in order else 999)
    Path(prefix + ".json").write_text(json.dumps({"rows": rows}, indent=2) + "\n")
    md = ["Integer golden model (bit-exact with the hardware). ImageNet rows: 900 held-out sample photos "
          "(calibration and GPTQ statistics: the other 100); default model: 1,000 held-out MNIST digits.",
          "Sizes: `stream` = encoded weight streams in the block-RAM format, `codebooks` = codebook entries, "
          "`file` = streams + codebooks as one lzma-coded file; linear rows: weights packed at k bits.", "",
          "| config | float top-1 | int top-1 | float top-5 | int top-5 | stream bytes | codebook bytes | file bytes (lzma) |",
          "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        f, q = r["float"], r["integer"]
        if "stream_bytes" in r:
            sizes = f"{r['stream_bytes']:,} | {r['codebook_bytes']:,} | {r['file_bytes']['lzma']:,}"
        else:
            sizes = f"{r['weight_bytes']:,} | | "
        md.append(f"| {r['config']} | {f['top1']:.3f} | {q['top1']:.3f} | {f['top5']:.3f} | {q['top5']:.3f} | "
                  f"{sizes} |")
    Path(prefix + ".md").write_text("\n".join(md) + "\n")
    return "\n".join(md)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default=None,
                    help="'bars' (the two quality-bar rows), or a substring of the config labels to run")
    ap.add_argument("--limit", type=int, default=None, help="evaluate at most N images (smoke runs)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "compression_accuracy"))
    ap.add_argument("--merge", metavar="JSON", nargs="*", default=[],
                    help="only merge the rows of these JSON files (runs with another --out) into --out; "
                         "rows of shard runs (--shard) are combined, weighted by their image counts")
    ap.add_argument("--shard", metavar="I/N", help="evaluate every N-th held-out image from the I-th "
                                                   "(parallel runs, each with its own --out)")
    args = ap.parse_args()
    if args.merge:
        prev = Path(args.out + ".json")
        rows = json.loads(prev.read_text())["rows"] if prev.is_file() else []
        new = [r for f in args.merge for r in json.loads(Path(f).read_text())["rows"]]
        for name in dict.fromkeys(r["config"] for r in new):
            parts = [r for r in new if r["config"] == name]
            row = dict(parts[0])
            if any("shard" in r for r in parts):
                n = sum(r["images"] for r in parts)
                for side in ("float", "integer"):
                    row[side] = {t: sum(r[side][t] * r["images"] for r in parts) / n for t in ("top1", "top5")}
                row["images"] = n
                row["shards"] = [r["shard"] for r in parts]
                row.pop("shard", None)
            rows = [r for r in rows if r["config"] != name] + [row]
        print(write(args.out, rows))
        return 0
    shard = tuple(int(v) for v in args.shard.split("/")) if args.shard else None
    todo = configs()
    if args.only == "bars":
        todo = [c for c in todo if c[0] in BARS]
    elif args.only:
        todo = [c for c in todo if args.only in c[0]]
    needs_photos = any(c[1] != DEFAULT for c in todo)
    if needs_photos and not DATA.is_dir():
        print(f"no ImageNet data at {DATA} (see its README); run with --only default", file=sys.stderr)
        return 2
    photos = None
    if needs_photos:
        from squeezehw.frontend.images import load_image_folder
        s = load_image_folder(DATA / "sample", height=224, width=224, channels=3, resize=256)
        photos = (s.images, s.labels)
    prev = Path(args.out + ".json")
    rows = json.loads(prev.read_text())["rows"] if prev.is_file() and not args.limit else []
    work = {}
    for label, key, kind, k, pc in todo:
        if key not in work:
            work[key] = Workload(key, photos, args.limit, shard)
        row = run_config(work[key], label, kind, k, pc)
        if shard:
            row["shard"] = args.shard
        print(json.dumps(row), file=sys.stderr)
        rows = [r for r in rows if r["config"] != label] + [row]
        if not args.limit:
            print(write(args.out, rows))
    if args.limit:
        print(write(args.out + "_smoke", rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
