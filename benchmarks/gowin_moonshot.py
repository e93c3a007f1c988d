"""The Gowin moonshot (issue 13): full ImageNet SqueezeNet with every weight on-chip on the Tang Mega
138K Pro's GW5AST-138C (340 BSRAM of 18 Kbit, 138,240 LUT4, 298 DSP blocks).  A benchmark, not CI.

Model: Deep Compression SqueezeNet v1.0 re-clustered to 6-bit codebooks with GPTQ rounding and
``--calibration search`` (benchmarks/dc_fullsize.py ``quantized_dc(gptq6=True)``): 0.606 top-1 on the
900 held-out sample photos against 0.614 for the float model (docs/compression.md).  Folded with
``auto_fold(max_multipliers=--multipliers)``, compressed weights shaped for the part's BSRAM
(``model_weight_codes(..., board=...)``), planned for the board (``Target(board=..., multiplier="gw5a")``).

Stages, each adding to one JSON summary (``--stop-after`` ends early):

* ``plan``: cycles per frame (cost model), frames/s at ``--mhz``, weight stream Mbit, the cost model's
  BSRAM by kind of memory and its LUT/FF/DSP (squeezehw.plan.resources.estimate), about 1 min;
* ``sim``: Verilator, ``--frames`` real photos (not calibration photos) back to back through exactly
  this design (the same plan: Gowin DSP primitives through their behavioural models), every logit
  compared with the golden model; measured cycles per frame against the cost model;
* ``yosys``: every stage's blocks through Yosys ``synth_gowin -family gw5a -nolutram -noflatten``
  with the part's logic-memory script (squeezehw.toolchain.synth.synthesize, place_and_route=False),
  one stage at a time, summed: Yosys's own BSRAM/LUT/FF/DSP counts beside the estimate's, per stage,
  and whether they fit (``yosys_stage`` says why not the whole design at once);
* ``board``: TangMega138KTop (UART, 50 MHz oscillator) through Yosys + nextpnr-himbaechel (``--freq
  --mhz``) + gowin_pack: nextpnr's resources and Fmax, timing met or not, the bitstream.  Hours here.
  ``lut_positions``: the joined netlist's LUTs + ALUs + flip-flops that no LUT of their own slice
  feeds (squeezehw.toolchain.gowin_slices); over the part's 138,240 the build stops before nextpnr.

    nice -n 10 .venv/bin/python benchmarks/gowin_moonshot.py --multipliers 133 --stop-after yosys
    nice -n 10 .venv/bin/python benchmarks/gowin_moonshot.py --stop-after sim --frames 2

Writes docs/results/gowin_moonshot_<stage>.json (``--out``) after every stage.
"""
from __future__ import annotations

import argparse
import collections
import json
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BOARD = "tang-mega-138k-pro"
STAGES = ("plan", "sim", "yosys", "board")


def memory_kind(path: str) -> str:
    """The kind of memory an elaborated memory path is, for the BSRAM breakdown."""
    leaf = path.rsplit(".", 1)[-1]
    if leaf in ("words", "sizes", "inbuf", "params") or leaf.startswith("codebook"):
        return {"words": "weight streams", "sizes": "popcount ROMs"}.get(leaf, leaf)
    if path.endswith(".weights"):
        return "dense weights"
    if "window" in path:
        return "line buffers (windows)"
    if "vbank" in path:
        return "pool line FIFOs"
    if "fifo" in path:
        return "FIFOs"
    return "other"


def plan_stage(args) -> tuple[dict, object, object]:
    from dc_fullsize import quantized_dc

    from squeezehw.boards.registry import get_board
    from squeezehw.plan.folding import auto_fold
    from squeezehw.plan.lowering import Target, lower
    from squeezehw.errors import UserError
    from squeezehw.plan.resources import estimate, spill_to_logic
    from squeezehw.quant.sparse_weights import model_weight_codes
    t0 = time.monotonic()
    model = quantized_dc(progress=not args.json, gptq6=True)
    fold = auto_fold(model, max_multipliers=args.multipliers)
    codes = model_weight_codes(model, fold, board=BOARD)
    b = get_board(BOARD)
    plan = lower(model, fold, Target(multiplier=b.multiplier, board=BOARD), weight_codes=codes)
    unspilled = estimate(plan, BOARD)
    # the memories that waste their BSRAM most go to flip-flops until the design fits
    try:
        boxes, spill_error = spill_to_logic(plan, BOARD, spare_blocks=args.spare_bsram), None
    except UserError as e:          # does not fit even so: the plan records why
        boxes, spill_error = (), str(e)
    est = estimate(plan, BOARD, boxes)
    summ = fold.summary(model)
    kinds, kbits = collections.Counter(), collections.Counter()
    for m in est["memories"]:
        if m["blocks"]:
            kinds[memory_kind(m["path"])] += m["blocks"]
            kbits[memory_kind(m["path"])] += m["width"] * m["depth"]
    cyc = summ["expected_cycles_per_frame"]
    stream_bits = sum(p.stream.total_bits for p in codes.values())
    dense_bits = sum(q.weight.size * q.w_bits for q in model.convs() if q.name not in codes)
    out = {
        "benchmark": "gowin_moonshot", "board": BOARD, "device": b.device,
        "model": "squeezenet1_0 Deep Compression, 6-bit codebooks + GPTQ, search calibration, 224x224",
        "accuracy": "0.606 top-1 (float 0.614) on the 900 held-out sample photos: docs/compression.md",
        "budget_multipliers": args.multipliers, "multipliers": summ["multipliers"],
        "folding": {k: [v.simd, v.pe] for k, v in fold.layers.items()},
        "cost_model_cycles_per_frame": cyc, "clock_mhz": args.mhz,
        "frames_per_second_at_clock": round(args.mhz * 1e6 / cyc, 2),
        "mac_efficiency": summ["expected_mac_efficiency"],
        "weight_stream_mbit": round(stream_bits / 1e6, 3), "dense_weight_mbit": round(dense_bits / 1e6, 3),
        "compressed_convs": len(codes), "convs": len(model.convs()),
        "logic_memories": [list(b) for b in boxes], "spill_error": spill_error,
        "estimate_all_memories_in_bsram": {"bsram": unspilled["block_ram"], "lut": unspilled["lut"],
                                           "ff": unspilled["ff"]},
        "estimate": {"bsram": est["block_ram"], "lut": est["lut"], "ff": est["ff"], "dsp": est["dsp"],
                     "bsram_by_kind": dict(kinds.most_common()),
                     "kbit_by_kind": {k: round(kbits[k] / 1e3, 1) for k in kinds},
                     "available": {"bsram": b.resources.bram, "lut": b.resources.lut, "ff": b.resources.ff,
                                   "dsp": b.resources.dsp}},
        "plan_seconds": round(time.monotonic() - t0, 1),
    }
    over = {k: out["estimate"][k] - v for k, v in out["estimate"]["available"].items() if out["estimate"][k] > v}
    out["estimate"]["fits"] = not over
    out["estimate"]["over_by"] = over
    return out, plan, (model, fold, codes)


def sim_stage(args, model, fold, codes) -> dict:
    from dc_fullsize import held_out_photos

    from squeezehw.boards.registry import get_board
    from squeezehw.plan.lowering import Target
    from squeezehw.sim.simulate import simulate_frames
    x, photos, labels = held_out_photos(model, args.frames)
    t0 = time.monotonic()
    rep = simulate_frames(model, fold, x, progress=not args.json, weight_codes=codes,
                          target=Target(multiplier=get_board(BOARD).multiplier, board=BOARD))
    return {"sim": {"bit_exact": rep.bit_exact, "frames": rep.frames, "mismatches": rep.mismatches[:5],
                    "photos": photos, "labels": labels,
                    "classes": rep.classes, "golden_classes": rep.golden_classes,
                    "cycles_per_frame": rep.cycles_per_frame,
                    "cost_model_cycles_per_frame": rep.expected_cycles_per_frame,
                    "mac_efficiency": rep.mac_efficiency, "latency_cycles": rep.latency_cycles,
                    "verilator_build_seconds": rep.build_seconds, "build_cached": rep.build_cached,
                    "simulation_seconds": rep.sim_seconds, "wall_seconds": round(time.monotonic() - t0, 1)}}


def record_blocks(r) -> list:
    """(name, block) for every block the accelerator instantiates for the top-level plan record
    ``r``, as hw/accelerator.py does: the stage's block, a conv's window, a pool's output FIFO."""
    out = [(r.name, r.block())]
    if r.kind == "conv" and r.window_block() is not None:
        out.append((r.name + ".window", r.window_block()))
    if r.kind == "pool":
        out.append((r.name + ".fifo", r.fifo_block()))
    return out


def yosys_stage(args, plan, boxes) -> dict:
    """Yosys stage by stage (each block of ``record_blocks`` synthesised on its own, the counts
    summed): the whole accelerator is too large for YoWASP's Yosys (WebAssembly, 4 GB), which threw
    right after flattening it (25 min in), and unflattened it was still in ABC9 (322 of ~700
    modules) after 65 min; one Fire takes about 100 s.  Only the stream glue between the stages
    (the Resizes of Chain.link, a few registers) is left out."""
    from squeezehw.plan.resources import design_inventory, inventory_estimate
    from squeezehw.boards.registry import get_board
    from squeezehw.toolchain.synth import synthesize
    res = get_board(BOARD).resources
    root = REPO / "build" / "gowin_moonshot" / f"yosys_m{args.multipliers}"
    t0 = time.monotonic()
    per, total = {}, collections.Counter()
    for r in plan.stages:
        for (name, block), (_, fresh) in zip(record_blocks(r), record_blocks(r)):  # a block elaborates once
            est = inventory_estimate(*design_inventory(block), BOARD, boxes)
            rep = synthesize(fresh, board=BOARD, out_dir=root / name.replace(".", "_"), top="top",
                             place_and_route=False, progress=not args.json, flatten=False,
                             logic_memories=boxes)
            got = {"bsram": rep.bram, "lut": rep.lut, "ff": rep.ff, "dsp": rep.dsp}
            per[name] = {"yosys": got, "estimate": {"bsram": est["block_ram"], "lut": est["lut"], "ff": est["ff"]},
                         "seconds": rep.seconds}
            total.update(got)
            if not args.json:
                print(f"  {name}: Yosys {got}, estimate {per[name]['estimate']}", file=sys.stderr, flush=True)
    avail = {"bsram": res.bram, "lut": res.lut, "ff": res.ff, "dsp": res.dsp}
    over = {k: total[k] - v for k, v in avail.items() if total[k] > v}
    return {"yosys": {"how": "stage by stage (synth_gowin -family gw5a -nolutram -noflatten, logic-memory "
                             "script), summed; the stream glue between stages left out",
                      "bsram": total["bsram"], "lut": total["lut"], "ff": total["ff"], "dsp": total["dsp"],
                      "available": avail, "fits": not over, "over_by": over, "stages": per},
            "yosys_seconds": round(time.monotonic() - t0, 1)}


def stage_comparison(plan, boxes, build_dir: Path) -> dict:
    """Yosys's BSRAM, LUT (LUT1-4 + ALU) and FF of every stage of a stage-by-stage board build in
    ``build_dir`` (its ``stages/*/stat.json``) beside the estimate's for the same block."""
    from squeezehw.plan.resources import design_inventory, inventory_estimate
    from squeezehw.toolchain.synth import _yosys_counts
    per, tot_y, tot_e = {}, collections.Counter(), collections.Counter()
    for r in plan.stages:
        for name, block in record_blocks(r):
            stat = build_dir / "stages" / name.replace(".", "_") / "stat.json"
            cells = {k: int(v) for k, v in json.loads(stat.read_text())["design"]["num_cells_by_type"].items()}
            counts = _yosys_counts(cells, "gowin")      # LUT: LUT1-4 + ALU, as the board flow counts
            got = {"bsram": counts["bram"], "lut": counts["lut"], "ff": counts["ff"]}
            e = inventory_estimate(*design_inventory(block), BOARD, boxes)
            est = {"bsram": e["block_ram"], "lut": e["lut"], "ff": e["ff"]}
            per[name] = {"yosys": got, "estimate": est}
            tot_y.update(got)
            tot_e.update(est)
    return {"yosys": dict(tot_y), "estimate": dict(tot_e), "stages": per,
            "note": "Chain's Resizes between stages and the board top (glue) are not in either column"}


def _slices(out_dir: Path):
    """The joined netlist's LUT positions (squeezehw.toolchain.gowin_slices: LUTs + ALUs + flip-flops
    no LUT of their own feeds), as the stage-by-stage build wrote them; None before the join."""
    f = out_dir / "slices.json"
    return json.loads(f.read_text()) if f.is_file() else None


def board_stage(args, plan, cyc: int, boxes) -> dict:
    """The board top built stage by stage (squeezehw.toolchain.stagewise: each of the accelerator's
    stages through Yosys on its own, two at a time, the netlists joined for nextpnr)."""
    from boards_fit import critical_path

    from squeezehw.boards.top import TangMega138KTop
    from squeezehw.errors import UserError
    from squeezehw.boards.registry import get_board
    from squeezehw.toolchain.stagewise import build_board_stagewise
    from squeezehw.toolchain.synth import board_synth_opts
    out_dir = REPO / "build" / "gowin_moonshot" / f"board_m{args.multipliers}{args.tag}"
    top = TangMega138KTop(plan.accelerator())
    t0 = time.monotonic()
    try:
        rep = build_board_stagewise(top, board=BOARD, out_dir=out_dir, partition="core.accel", seed=args.seed,
                                    target_mhz=args.mhz, progress=not args.json, logic_memories=boxes,
                                    nextpnr_extra=(("--placer", args.placer) if args.placer else ())
                                    + tuple(args.nextpnr_extra.split()))
    except UserError as e:
        return {"board_build": {"built": False, "error": str(e), "seconds": round(time.monotonic() - t0, 1),
                                "lut_positions": _slices(out_dir)}}
    return {"board_build": {
        "lut_positions": _slices(out_dir),
        "fits": True, "lut": rep.lut, "ff": rep.ff, "dsp": rep.dsp, "bsram": rep.bram,
        "fmax_mhz": rep.fmax_mhz, "target_mhz": rep.target_mhz, "timing_met": rep.timing_met,
        "frames_per_second_at_fmax": round(rep.fmax_mhz * 1e6 / cyc, 2) if rep.fmax_mhz else None,
        "utilization": {k: v for k, v in rep.utilization.items() if v.get("used")},
        "critical_path": critical_path(Path(rep.logs["nextpnr"])), "bitstream": rep.bitstream,
        "tools": rep.tools, "seed": args.seed, "placer": args.placer or "heap (default)",
        "nextpnr_extra": args.nextpnr_extra,
        "synth_opts": board_synth_opts(get_board(BOARD)),
        "step_seconds": rep.step_seconds,
        "seconds": round(time.monotonic() - t0, 1)},
        "yosys_by_stage": stage_comparison(plan, boxes, out_dir)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--multipliers", type=int, default=133, help="MAC multiplier budget for auto folding")
    ap.add_argument("--mhz", type=float, default=100.0, help="clock for frames/s and nextpnr's --freq")
    ap.add_argument("--stop-after", choices=STAGES, default="board")
    ap.add_argument("--seed", type=int, default=1, help="nextpnr placer seed")
    ap.add_argument("--nextpnr-extra", default="", metavar="ARGS",
                    help='more nextpnr options, e.g. "--placer-heap-beta 0.55"')
    ap.add_argument("--placer", choices=("heap", "sa"), default=None,
                    help="nextpnr placer (default: nextpnr's, HeAP; the Gowin uarch has no 'static' placer)")
    ap.add_argument("--tag", default="", help="suffix of the board build's folder (build/gowin_moonshot/board_m<N><TAG>)")
    ap.add_argument("--spare-bsram", type=int, default=4,
                    help="BSRAMs kept free when choosing the memories built from logic (the estimate's margin)")
    ap.add_argument("--frames", type=int, default=2, help="photos simulated back to back (>= 2)")
    ap.add_argument("--skip", choices=STAGES[1:], action="append", default=[],
                    help="leave out this stage (repeatable)")
    ap.add_argument("--out", type=Path, default=None, help="JSON output (default docs/results/gowin_moonshot_<stage>.json)")
    ap.add_argument("--compare-stages", type=Path, default=None, metavar="BUILD_DIR",
                    help="after the plan, only compare the per-stage Yosys counts of an earlier board "
                         "build in BUILD_DIR (its stages/*/stat.json) with the estimate")
    ap.add_argument("--json", action="store_true", help="no progress output")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(REPO / "benchmarks"))
    from dc_fullsize import DATA, WEIGHTS
    if not WEIGHTS.is_file() or not (DATA / "sample").is_dir():
        print(f"benchmark needs {WEIGHTS} and {DATA / 'sample'}; not found", file=sys.stderr)
        return 2
    warnings.simplefilter("ignore")          # Amaranth's UnusedElaboratable noise from the plan stage
    path = args.out or REPO / "docs" / "results" / f"gowin_moonshot_{args.stop_after}.json"

    def save(res):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(res, indent=1) + "\n")

    if args.frames < 2:
        print("--frames must be at least 2 (cycles per frame are measured between frames)", file=sys.stderr)
        return 2
    res, plan, (model, fold, codes) = plan_stage(args)
    boxes = tuple(tuple(b) for b in res["logic_memories"])
    if res["spill_error"] and args.stop_after != "plan":
        print(f"the design does not fit {BOARD}: {res['spill_error']}", file=sys.stderr)
    if args.compare_stages:
        res["yosys_by_stage"] = stage_comparison(plan, boxes, args.compare_stages)
        print(json.dumps(res, indent=1))
        return 0
    save(res)
    last = STAGES.index(args.stop_after)
    for stage in STAGES[1:last + 1]:
        if stage in args.skip:
            continue
        if stage == "sim":
            res.update(sim_stage(args, model, fold, codes))
        elif stage == "yosys":
            res.update(yosys_stage(args, plan, boxes))
        else:
            res.update(board_stage(args, plan, res["cost_model_cycles_per_frame"], boxes))
        save(res)
        if stage == "sim" and not res["sim"]["bit_exact"]:
            break                       # a mismatch is the finding; stop there
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
