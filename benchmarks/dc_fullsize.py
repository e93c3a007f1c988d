"""Full-size proof of the compressed weights: Deep Compression SqueezeNet v1.0 at 224x224 in Verilator.

Quantizes ../shared/data/imagenet/squeezenet1_0_deep_compression.npz keeping its own 8-bit shared
values (``squeezehw quantize --codebook keep``: 16-bit codebook entries, pruned zeros stay zero;
calibrated on every 10th sample photo, cached in build/), folds it automatically for a multiplier
budget, and simulates the same real photos (not calibration photos) back to back in Verilator
twice at that folding:

- compressed: every conv with a per-layer codebook reads its packed stream through a WeightDecoder
  (``weight_codes=model_weight_codes(model, fold)``, what ``squeezehw build``/``sim`` do by
  default); conv1's per-output-channel codebooks stay dense;
- dense: the same model with dense weight memories (``--weights dense``), i.e. every weight stored
  at the codebook entries' width.

Both are checked logit by logit against the golden model.  Per build: bit-exact verdict, cycles
per frame (measured, cost model), latency, MAC efficiency (dense MACs: every weight, zeros
included, as the MVUs multiply them), the weight memories' bits per conv (design.json's
``weight_memory_bits``) and their block RAMs on ECP5-85F and Tang Mega 138K
(squeezehw.plan.resources.estimate).  ``int8_reference`` gives the plan-only figures (no
simulation) of the same network quantized to plain per-channel int8 at the same folding.  Prints
one JSON object and writes it to docs/results/dc_fullsize.json (``--out``).

    nice -n 10 .venv/bin/python benchmarks/dc_fullsize.py --multipliers 500 --frames 4
    .venv/bin/python benchmarks/dc_fullsize.py --plan-only      # plan figures only, ~1 min

Verilator builds are cached by content: a rerun reports build_cached true and 0 build seconds
(the cold figures of the first run are in docs/results/dc_fullsize_2photos_cold.json).

Not a CI test: each Verilator build and simulation takes many minutes.
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
WEIGHTS = DATA / "squeezenet1_0_deep_compression.npz"
BOARDS = ("ecp5-85f", "tang-mega-138k-pro")


def quantized_dc(progress: bool, int8: bool = False, gptq6: bool = False):
    """The DC v1.0 integer model: ``--codebook keep`` (8-bit indices), plain int8 per channel
    (``int8``), or (``gptq6``) re-clustered to 6-bit codebooks with GPTQ rounding and
    ``--calibration search`` -- the row of docs/compression.md that stays within 1 point of
    float top-1 (0.606 vs 0.614 on the 900 held-out photos) and the Gowin moonshot's model."""
    from fullsize import calibration_photos
    from squeezehw.frontend.importer import load_network
    from squeezehw.outputs import cache_dir
    from squeezehw.quant.compression import CodebookSpec, layer_hessians
    from squeezehw.quant.intmodel import IntModel
    from squeezehw.quant.quantize import calibration_ranges, quantize
    name = "bench-dc10-int8.npz" if int8 else "bench-dc10-c6-gptq-search.npz" if gptq6 else "bench-dc10-keep8.npz"
    cache = cache_dir() / name
    if cache.is_file():
        return IntModel.load(cache)
    net = load_network("squeezenet1_0", WEIGHTS)
    calib = calibration_photos(net, progress)
    source = "squeezenet1_0 + squeezenet1_0_deep_compression.npz"
    if gptq6:
        spec = CodebookSpec(index_bits=6, mode="cluster", refine="gptq").validate()
        model = quantize(net, calib, w_bits=8, codebook=spec, calibration="search",
                         ranges=calibration_ranges(net, calib, calibration="search"),
                         hessians=layer_hessians(net, calib), progress=progress, source=source)
    else:
        spec = None if int8 else CodebookSpec(index_bits=8, mode="keep", refine="none").validate()
        model = quantize(net, calib, w_bits=8, codebook=spec, progress=progress, source=source)
    cache.parent.mkdir(parents=True, exist_ok=True)
    model.save(cache)
    return model


def held_out_photos(model, frames: int):
    """The first ``frames`` sample photos that calibration does not use (every 10th from the 6th;
    calibration takes every 10th from the 1st), at ``model``'s input: (images, their paths
    relative to DATA, their labels)."""
    from squeezehw.frontend.images import list_image_folder, load_images
    files, labels, _ = list_image_folder(DATA / "sample")
    pick = [i for i in range(len(files)) if i % 10 == 5][:frames]
    x, _, _ = load_images([files[i] for i in pick], height=model.height, width=model.width,
                          channels=model.in_ch, resize=model.resize, progress=False)
    return x, [str(files[i].relative_to(DATA)) for i in pick], [int(labels[i]) for i in pick]


def weight_memory_conv(path: str) -> str | None:
    """The conv a memory of the elaborated design stores weights for, from its path
    ('features_3.expand3x3.weight_decoder.words' -> 'features.3.expand3x3',
    'classifier_1.mvu.weights' -> 'classifier.1'), or None for any other memory."""
    for marker in (".weights", ".weight_decoder."):
        if marker in path or path.endswith(marker.rstrip(".")):
            head = path.split(marker.rstrip("."))[0].removesuffix(".mvu")
            first, _, rest = head.partition(".")
            return first.replace("_", ".") + ("." + rest if rest else "")
    return None


def memory_part(path: str) -> str:
    """'words' (packed stream or dense weights), 'sizes' (the bitmap decoder's popcount ROM) or 'codebook'."""
    if ".weight_decoder." not in path:
        return "words"
    leaf = path.rsplit(".", 1)[1]
    return "codebook" if leaf.startswith("codebook") else leaf


def weight_memories(model, plan) -> dict:
    """Per conv: format, weight_memory_bits (ConvPlan), and per board the block RAMs of its
    weight memories (words / popcount ROM / codebook copies) from resources.estimate."""
    from squeezehw.boards.registry import get_board
    from squeezehw.hw.weight_decoder import WeightDecoder
    from squeezehw.plan.lowering import ConvPlan
    from squeezehw.plan.resources import estimate
    convs = {}
    for p in plan.compute_stages():
        if isinstance(p, ConvPlan):
            convs[p.name] = {"format": "dense" if p.weight_code is None else p.weight_code.stream.fmt,
                             "w_bits": p.w_bits, "simd": p.simd, "pe": p.pe,
                             "weight_memory_bits": p.weight_memory_bits,
                             "word_bits": p.weight_width if p.weight_code is None else p.weight_code.word_bits,
                             "depth": p.weight_depth if p.weight_code is None else p.weight_code.depth}
            if p.weight_code is not None:       # the decoder's own LUT/FF model (ECP5 LUT4)
                dec = WeightDecoder(p.weight_code, lane_bits=p.w_bits)
                dec._MustUse__silence = True     # built for its estimate only, not left out of a design
                e = dec.estimate("ecp5")
                convs[p.name].update(decoder_lut_estimate=e["lut"], decoder_ff_estimate=e["ff"])
    missing = {q.name for q in model.convs()} - set(convs)
    if missing:
        raise RuntimeError(f"no ConvPlan found for {sorted(missing)}")
    boards = {}
    for board in BOARDS:
        est = estimate(plan, board)
        per = {n: {"words": 0, "sizes": 0, "codebook": 0} for n in convs}
        for m in est["memories"]:
            conv = weight_memory_conv(m["path"])
            if conv is None:
                continue
            if conv not in per:
                raise RuntimeError(f"weight memory {m['path']} maps to {conv}, not a conv")
            per[conv][memory_part(m["path"])] += m["blocks"]
        for n, v in per.items():
            convs[n].setdefault("block_ram", {})[board] = v
        tot = {k: sum(v[k] for v in per.values()) for k in ("words", "sizes", "codebook")}
        boards[board] = {"cell": est["block_ram_cell"], "weight_words": tot["words"],
                         "vector_length_roms": tot["sizes"], "codebook_copies": tot["codebook"],
                         "weight_memories": sum(tot.values()), "whole_design": est["block_ram"],
                         "lut_estimate": est["lut"], "ff_estimate": est["ff"],
                         "available": {"block_ram": get_board(board).resources.bram,
                                       "lut": get_board(board).resources.lut}}
    return {"convs": convs, "boards": boards,
            "weight_memory_bits": sum(c["weight_memory_bits"] for c in convs.values()),
            "decoder_lut_estimate": sum(c.get("decoder_lut_estimate", 0) for c in convs.values())}


def nonzero_macs(model) -> int:
    """MACs per frame with a non-zero weight (the work a zero-skipping engine would do)."""
    from squeezehw.plan.folding import stages
    nz = {q.name: int(np.count_nonzero(q.weight)) for q in model.convs()}
    return sum(s.out_pixels * nz[s.name] for s in stages(model) if s.kind == "conv")


def run_build(label, model, fold, x, codes, args) -> dict:
    from squeezehw.plan.lowering import lower
    from squeezehw.sim.simulate import simulate_frames
    t0 = time.monotonic()
    mem = weight_memories(model, lower(model, fold, weight_codes=codes))
    plan_s = time.monotonic() - t0
    t1 = time.monotonic()
    rep = simulate_frames(model, fold, x, progress=not args.json, diagnose=args.diagnose,
                          weight_codes=codes)
    wall = time.monotonic() - t1
    out = {"bit_exact": rep.bit_exact, "frames": rep.frames, "mismatches": rep.mismatches[:5],
           "cycles_per_frame": rep.cycles_per_frame, "cost_model_cycles_per_frame": rep.expected_cycles_per_frame,
           "frame_intervals": rep.frame_intervals, "latency_cycles": rep.latency_cycles,
           "multipliers": rep.multipliers, "dense_macs_per_frame": rep.macs_per_frame,
           "mac_efficiency": rep.mac_efficiency,
           "fps_at_clock": args.clock * 1e6 / rep.cycles_per_frame if rep.cycles_per_frame else None,
           "classes": rep.classes, "golden_classes": rep.golden_classes,
           "compressed_convs": {n: c["format"] for n, c in mem["convs"].items() if c["format"] != "dense"},
           "weight_memory_bits": mem["weight_memory_bits"], "block_ram": mem["boards"],
           "decoder_lut_estimate": mem["decoder_lut_estimate"],
           "build_style": rep.build_style, "build_cached": rep.build_cached,
           "verilator_build_seconds": rep.build_seconds, "verilator_build_cpu_seconds": rep.build_cpu_seconds,
           "simulation_seconds": rep.sim_seconds,
           "simulate_frames_wall_seconds": round(wall, 1), "sim_cycles_per_second": rep.sim_cycles_per_second,
           "total_sim_cycles": rep.total_cycles,
           "plan_and_estimate_seconds": round(plan_s, 1),
           "convs": mem["convs"]}
    if not args.json:
        print(f"{label}: bit_exact {rep.bit_exact}, {rep.cycles_per_frame} cycles/frame "
              f"(cost model {rep.expected_cycles_per_frame}), build {rep.build_seconds:.0f} s, "
              f"sim {rep.sim_seconds:.0f} s", file=sys.stderr)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--multipliers", type=int, default=500, help="MAC multiplier budget for auto folding")
    ap.add_argument("--speed-slack", type=float, default=2.0, metavar="PCT",
                    help="auto folding: frame rate (%%) it may give up for higher MAC efficiency (default 2)")
    ap.add_argument("--frames", type=int, default=2, help="photos simulated back to back (>= 2)")
    ap.add_argument("--clock", type=float, default=100.0, help="clock (MHz) for the frames/s figure")
    ap.add_argument("--only", choices=("compressed", "dense"), action="append",
                    help="simulate only this build (repeatable; default both, compressed first)")
    ap.add_argument("--no-diagnose", dest="diagnose", action="store_false",
                    help="on a mismatch do not bisect for the first differing layer (saves builds)")
    ap.add_argument("--plan-only", action="store_true",
                    help="folding, memories, block RAM and decoder LUTs; no Verilator (writes "
                         "docs/results/dc_fullsize_plan.json unless --out)")
    ap.add_argument("--out", type=Path, default=None,
                    help="JSON output (default docs/results/dc_fullsize.json)")
    ap.add_argument("--json", action="store_true", help="no progress output (the JSON is always printed)")
    args = ap.parse_args(argv)
    if not WEIGHTS.is_file() or not (DATA / "sample").is_dir():
        print(f"benchmark needs {WEIGHTS} and {DATA / 'sample'} (real ImageNet weights and photos); "
              "not found", file=sys.stderr)
        return 2
    if args.frames < 2:
        print("--frames must be at least 2 (cycles per frame are measured between frames)", file=sys.stderr)
        return 2
    from squeezehw.plan.folding import auto_fold
    from squeezehw.plan.lowering import lower
    from squeezehw.quant.sparse_weights import model_weight_codes
    progress = not args.json
    t0 = time.monotonic()
    model = quantized_dc(progress)
    fold = auto_fold(model, max_multipliers=args.multipliers, speed_slack=args.speed_slack / 100)
    codes = model_weight_codes(model, fold)
    x, photos, labels = held_out_photos(model, args.frames)
    fsum = fold.summary(model)
    int8 = quantized_dc(progress, int8=True)
    int8_mem = weight_memories(int8, lower(int8, fold))
    out = {
        "benchmark": "dc_fullsize",
        "model": "squeezenet1_0 Deep Compression, --codebook keep (8-bit indices, 16-bit entries), 224x224",
        "weights": WEIGHTS.name, "budget_multipliers": args.multipliers, "speed_slack_pct": args.speed_slack,
        "calibration": "sample photos 0, 10, 20, ... (100)",
        "photos": photos, "labels": labels,
        "multipliers": fsum["multipliers"], "cost_model_cycles_per_frame": fsum["expected_cycles_per_frame"],
        "dense_macs_per_frame": fsum["macs_per_frame"], "nonzero_weight_macs_per_frame": nonzero_macs(model),
        "cost_model_mac_efficiency": fsum["expected_mac_efficiency"], "clock_mhz": args.clock,
        "weights_count": int(sum(q.weight.size for q in model.convs())),
        "nonzero_weights": int(sum(np.count_nonzero(q.weight) for q in model.convs())),
        "prepare_seconds": round(time.monotonic() - t0, 1),
        "folding": {k: [v.simd, v.pe] for k, v in fold.layers.items()},
        "int8_reference": {"what": "the same float weights quantized to plain per-channel int8 (no codebook), "
                                   "same folding; plan only, not simulated",
                           "weight_memory_bits": int8_mem["weight_memory_bits"], "block_ram": int8_mem["boards"]},
        "builds": {},
    }
    if args.plan_only:
        for label, wc in (("compressed", codes), ("dense", None)):
            mem = weight_memories(model, lower(model, fold, weight_codes=wc))
            out["builds"][label] = {"weight_memory_bits": mem["weight_memory_bits"], "block_ram": mem["boards"],
                                    "decoder_lut_estimate": mem["decoder_lut_estimate"], "convs": mem["convs"]}
        out_path = args.out or REPO / "docs" / "results" / "dc_fullsize_plan.json"
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(out, indent=1) + "\n")
        print(json.dumps(out, indent=1))
        return 0
    args.out = args.out or REPO / "docs" / "results" / "dc_fullsize.json"
    for label in ("compressed", "dense"):
        if args.only and label not in args.only:
            continue
        out["builds"][label] = run_build(label, model, fold, x, codes if label == "compressed" else None, args)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=1) + "\n")      # after each build: a partial result is kept
        if not out["builds"][label]["bit_exact"]:
            break                                                   # a mismatch is the finding; stop there
    print(json.dumps(out, indent=1))
    return 0 if all(b["bit_exact"] for b in out["builds"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
