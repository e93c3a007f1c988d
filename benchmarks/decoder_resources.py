"""WeightDecoder cost model vs Yosys: LUT4 / FF / DP16KD of the compressed-weight decoder on ECP5.

For a few layer sizes (random weights at a given density, a random codebook of 2**k entries), encodes
the weights (squeezehw.quant.sparse_weights.encode_for_mvu: the narrowest word W and buffer C that keep one
vector per cycle), builds a WeightDecoder alone and synthesises it with Yosys ``synth_ecp5 -abc9``
(``stat -json``; LUT = LUT4 + 2 per CCU2C + 4 per TRELLIS_DPR16X4, as squeezehw.toolchain.synth counts), next
to ``WeightDecoder.estimate()``.  Also prints the dense weight memory's DP16KD count for the same
layer and folding (what the decoder replaces).  Not a CI test (Yosys takes a while per size).

    .venv/bin/python benchmarks/decoder_resources.py --json             # every size below
    .venv/bin/python benchmarks/decoder_resources.py --only L16-k6-bitmap --pnr   # + nextpnr Fmax
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# name: (O, N, PE, SIMD, k, density, format)
SIZES = {
    "L8-k4-bitmap": (16, 32, 2, 4, 4, 0.5, "bitmap"),
    "L16-k4-dense": (64, 64, 4, 4, 4, 0.5, "dense-index"),
    "L16-k6-bitmap": (64, 144, 4, 4, 6, 0.33, "bitmap"),
    "L32-k8-bitmap": (64, 64, 4, 8, 8, 0.3, "bitmap"),
    "L64-k6-bitmap": (64, 144, 8, 8, 6, 0.33, "bitmap"),
}


def build(O, N, pe, simd, k, density, fmt, seed=1):
    from squeezehw.frontend.ir import bits_for_signed
    from squeezehw.hw.weight_decoder import WeightDecoder
    from squeezehw.quant.sparse_weights import encode_for_mvu
    rng = np.random.default_rng(seed)
    zero = fmt == "dense-index"
    cb = [int(v) for v in rng.permutation(np.arange(-128, 128)) if v != 0][:(1 << k) - int(zero)]
    cb += [0] * zero
    nz = [c for c in cb if c]
    w = np.where(rng.random((O, N)) < density, rng.choice(nz, (O, N)), 0)
    packed = encode_for_mvu(w, cb, k=k, pe=pe, simd=simd, fmt=fmt)
    w_bits = bits_for_signed(min(int(w.min()), 0), max(int(w.max()), 0))
    return WeightDecoder(packed, lane_bits=w_bits), packed, w_bits


def yosys_stat(dut, workdir: Path) -> tuple[dict, float]:
    from amaranth.back import verilog

    from squeezehw.toolchain.synth import _yosys_counts, find_tool
    workdir.mkdir(parents=True, exist_ok=True)
    text = verilog.convert(dut, name="top", emit_src=False)
    stat = workdir / "stat.json"
    if (workdir / "top.v").is_file() and (workdir / "top.v").read_text() == text and stat.is_file():
        # the same Verilog was synthesised into this folder before (-o): reuse Yosys's counts
        cells = json.loads(stat.read_text())["design"]["num_cells_by_type"]
        return _yosys_counts({k: int(v) for k, v in cells.items()}, "ecp5"), 0.0
    stat.unlink(missing_ok=True)
    (workdir / "top.v").write_text(text)
    (workdir / "synth.ys").write_text("read_verilog -sv top.v\nsynth_ecp5 -abc9 -top top\n"
                                      "tee -q -o stat.json stat -json\n")
    t0 = time.monotonic()
    subprocess.run([find_tool("yosys"), "-q", "-l", "yosys.log", "-s", "synth.ys"], cwd=workdir,
                   check=True, capture_output=True)
    cells = json.loads((workdir / "stat.json").read_text())["design"]["num_cells_by_type"]
    return _yosys_counts({k: int(v) for k, v in cells.items()}, "ecp5"), time.monotonic() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="+", choices=sorted(SIZES), help="sizes to run (default: all)")
    ap.add_argument("-o", "--out", default=None,
                    help="keep the Yosys work folders here (a size whose Verilog is unchanged reuses its counts)")
    ap.add_argument("--pnr", action="store_true",
                    help="also place and route each size out of context on ecp5-85f (nextpnr) for its Fmax")
    ap.add_argument("--target-mhz", type=float, default=100.0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    from squeezehw.plan.resources import blocks_for
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="decoder-resources-"))
    rows = []
    for name in args.only or SIZES:
        O, N, pe, simd, k, density, fmt = SIZES[name]
        dut, packed, w_bits = build(O, N, pe, simd, k, density, fmt)
        est = dut.estimate("ecp5")
        got, secs = yosys_stat(dut, out / name)
        dense_blocks = blocks_for(pe * simd * w_bits, packed.stream.vectors, "ecp5")
        row = {"size": name, "O": O, "N": N, "pe": pe, "simd": simd, "k": k, "density": density,
               "format": packed.stream.fmt, "vectors": packed.stream.vectors,
               "bits_per_vector": round(packed.bits_per_vector, 2), "dense_bits_per_vector": pe * simd * w_bits,
               "word_bits": packed.word_bits, "buffer_bits": packed.buffer_bits, "depth": packed.depth,
               "estimate": {"lut": est["lut"], "ff": est["ff"], "bram": est["block_ram"]},
               "yosys": {"lut": got["lut"], "ff": got["ff"], "bram": got["bram"]},
               "ratio": {r: round(est[e] / got[r], 2) if got[r] else None
                         for r, e in (("lut", "lut"), ("ff", "ff"), ("bram", "block_ram"))},
               "dense_weight_bram": dense_blocks, "yosys_seconds": round(secs, 1)}
        if args.pnr:
            from squeezehw.toolchain.synth import synthesize
            rep = synthesize(dut, board="ecp5-85f", out_dir=out / name / "pnr", target_mhz=args.target_mhz)
            row["pnr"] = {"lut": rep.lut, "ff": rep.ff, "bram": rep.bram, "fmax_mhz": rep.fmax_mhz,
                          "target_mhz": rep.target_mhz, "timing_met": rep.timing_met, "seconds": rep.seconds}
        rows.append(row)
        print(f"{name}: W={packed.word_bits} C={packed.buffer_bits} est {row['estimate']} "
              f"yosys {row['yosys']} ({secs:.0f} s)", file=sys.stderr, flush=True)
    result = {"benchmark": "decoder_resources", "family": "ecp5", "rows": rows}
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        for r in rows:
            print(f"{r['size']:<15} W {r['word_bits']:>4} C {r['buffer_bits']:>5}  "
                  + "  ".join(f"{x} {r['estimate'][x]}/{r['yosys'][x]}" for x in ("lut", "ff", "bram"))
                  + f"  (estimate/Yosys; dense weights {r['dense_weight_bram']} DP16KD)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
