"""Encoded weight sizes of Deep Compression SqueezeNet v1.0 per layer, and block RAMs per target.

Sizes depend on the weights only, not on the activation calibration, so this quantizes with 8
calibration photos (seconds, not minutes).  Rows: the model's own 8-bit shared values (``keep``)
and a 6-bit k-means codebook with nearest rounding (``refine="none"``; GPTQ rounding can move a
few weights of bitmap layers to the implicit zero, so its streams are at most this size: the
accuracy benchmark, benchmarks/compression_accuracy.py, records its exact sizes).

Writes ``benchmarks/compression_sizes.json`` and ``.md``.

    nice -n 10 .venv/bin/python benchmarks/compression_sizes.py
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "imagenet"


def main() -> int:
    if not DATA.is_dir():
        print(f"no ImageNet data at {DATA}; see its README", file=sys.stderr)
        return 2
    import numpy as np

    from squeezehw.frontend.images import list_image_folder, load_images
    from squeezehw.frontend.importer import load_network
    from squeezehw.plan.memory import memory_report
    from squeezehw.quant.compression import CodebookSpec, pack_weights_file, unpack_weights_file
    from squeezehw.quant.quantize import quantize
    net = load_network("squeezenet1_0", DATA / "squeezenet1_0_deep_compression.npz")
    files, _, _ = list_image_folder(DATA / "sample")
    calib, _, _ = load_images(files[::125], height=224, width=224, channels=3, resize=256, progress=False)
    out, md = {}, []
    for label, spec in (("own 8-bit shared values", CodebookSpec(index_bits=8, mode="keep")),
                        ("6-bit k-means codebook, nearest", CodebookSpec(index_bits=6, refine="none"))):
        model = quantize(net, calib, codebook=spec, progress=False)
        rep = memory_report(model)
        comp = rep["compressed"]
        files_b = {}
        for codec in ("lzma", "zlib", "bz2"):
            data = pack_weights_file(model, codec)
            files_b[codec] = len(data)
        back = unpack_weights_file(pack_weights_file(model))       # the file decodes to the weights
        assert all(np.array_equal(back[q.name], q.weight) for q in model.convs())
        dense_int8 = sum(q.weight.size for q in model.convs())
        out[label] = {"spec": spec.as_dict(), "stream_bytes": comp["stream_bytes"],
                      "codebook_bytes": comp["codebook_bytes"], "file_bytes": files_b,
                      "dense_int8_bytes": dense_int8, "block_rams": comp["block_rams"],
                      "max_acc_bits": max(q.acc_bits for q in model.convs()),
                      "convs": comp["convs"]}
        md += [f"### Deep Compression v1.0, {label}", "",
               f"streams {comp['stream_bytes']:,} B + codebooks {comp['codebook_bytes']:,} B = "
               f"{comp['stream_bytes'] + comp['codebook_bytes']:,} B (dense int8: {dense_int8:,} B); "
               f"entropy-coded file: " + ", ".join(f"{c} {b:,} B" for c, b in files_b.items()) + "; "
               f"widest accumulator {out[label]['max_acc_bits']} bits", "",
               "| target | block RAM | streams | codebooks | available |", "|---|---|---:|---:|---:|"]
        for name, t in comp["block_rams"].items():
            md.append(f"| {name} | {t['cell']} ({t['block_bits']:,} bits) | {t['stream_blocks']} | "
                      f"{t['codebook_blocks']} | {t['available']} |")
        md += ["", "| conv | encoding | entry bits | codebooks x entries | non-zero / weights | stream bits | codebook bits |",
               "|---|---|---:|---:|---:|---:|---:|"]
        for name, c in comp["convs"].items():
            q = next(q for q in model.convs() if q.name == name)
            md.append(f"| {name} | {c['encoding']} | {c['entry_bits']} | {q.codebook.shape[0]} x "
                      f"{int(q.codebook_size.max())} | {c['nonzero']:,} / {c['weights']:,} | "
                      f"{c['stream_bits']:,} | {c['codebook_bits']:,} |")
        md.append("")
    Path(ROOT / "benchmarks" / "compression_sizes.json").write_text(json.dumps(out, indent=2) + "\n")
    Path(ROOT / "benchmarks" / "compression_sizes.md").write_text("\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
