"""Gowin board builds to bitstreams (a benchmark, not CI): the UART board tops of boards/top.py on the
Tang Mega 138K Pro (GW5AST-138C) and the Tang Primer 20K (GW2A-18C), with the open flow
(Yosys synth_gowin + nextpnr-himbaechel-gowin + Apycula's gowin_pack, via squeezehw.boards.gowin).

* ``mega``: the default MNIST model (default_folding) in TangMega138KTop (50 MHz oscillator).
* ``mega-large``: SqueezeNet v1.1's layout at ``--large-base-e`` (default 80: the largest member that
  fits the ULX3S-85F, benchmarks/boards_fit.py), 3x64x64, 10 classes, random int8 weights (seed 1),
  auto_fold(max_multipliers=``--large-max-multipliers``), in TangMega138KTop.
* ``primer``: the default MNIST model in TangPrimer20KTop (27 MHz -> rPLL -> ``--primer-mhz``); it does
  not fit the GW2A-18C (docs/boards.md).
* ``primer-tiny``: the iCEBreaker's tiny family member (benchmarks/boards_fit.py ``tiny_family_up5k``,
  one multiplier per conv) in TangPrimer20KTop.

Every multiply whose operands fit is a DSP primitive with its own registers (hw/multiplier.py:
MULT12X12 on GW5A, MULT9X9/MULT18X18 on GW2A), chosen by the board registry.  Reports go to
build/gowin_fit/<which>/ (report.json, nextpnr log top.tim), a summary with the cost model's cycles
per frame, frames/s at the target clock and at Fmax, and squeezehw.plan.resources.estimate beside
nextpnr's counts to build/gowin_fit/summary_<which>.json.

    .venv/bin/python benchmarks/gowin_fit.py --only mega|mega-large|primer [--primer-mhz 54] [--seed 1]
"""
import argparse
import json
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

from boards_fit import critical_path, large_ulx3s_model, tiny_up5k_model  # noqa: E402
from squeezehw.boards.top import TangMega138KTop, TangPrimer20KTop  # noqa: E402

from squeezehw.errors import UserError  # noqa: E402
from squeezehw.pipeline import default_int_model  # noqa: E402
from squeezehw.plan.folding import auto_fold, default_folding  # noqa: E402
from squeezehw.plan.resources import estimate  # noqa: E402
from squeezehw.toolchain.synth import build_board  # noqa: E402

OUT = REPO / "build" / "gowin_fit"


def build(which: str, *, primer_mhz: float, seed: int, baud: int, large_base_e: int, large_mult: int) -> dict:
    cfg = None
    if which == "mega-large":
        cfg, model = large_ulx3s_model(large_base_e)
        fold = auto_fold(model, max_multipliers=large_mult)
    elif which == "primer-tiny":
        cfg, model = tiny_up5k_model()
        fold = auto_fold(model, max_multipliers=len(model.convs()))
    else:
        model = default_int_model(progress=False)
        fold = default_folding(model)
    if which.startswith("primer"):
        board, top_cls, mhz = "tang-primer-20k", TangPrimer20KTop, primer_mhz
    else:
        board, top_cls, mhz = "tang-mega-138k-pro", TangMega138KTop, 50.0
    from squeezehw.boards.registry import get_board

    from squeezehw.plan.lowering import Target, lower
    plan = lower(model, fold, Target(multiplier=get_board(board).multiplier))   # the registry's DSP form
    accel = plan.accelerator()
    top = top_cls(accel, baud=baud, core_hz=mhz * 1e6)
    summ = fold.summary(model)
    est = estimate(plan, board)
    head = {"board": board, "model": model.name, "family_config": cfg.to_dict() if cfg else None,
            "weights": int(sum(c.weight.size for c in model.convs())),
            "weight_bits": int(sum(c.weight.size * c.w_bits for c in model.convs())),
            "multipliers": summ["multipliers"], "requant_multipliers": accel.requant_multipliers(),
            "expected_cycles_per_frame": summ["expected_cycles_per_frame"], "core_mhz": mhz,
            "estimate": {k: est[k] for k in ("block_ram", "dsp", "lut", "ff")}, "pll": top.pll, "baud": baud}
    t0 = time.monotonic()
    out_name = which if which != "mega-large" else f"{which}-e{large_base_e}"
    try:
        rep = build_board(top, board=board, out_dir=OUT / out_name, seed=seed, target_mhz=mhz)
    except UserError as e:          # does not fit: record why instead of stopping
        print(f"{board}: {e}", flush=True)
        return {**head, "fits": False, "error": str(e), "seconds": round(time.monotonic() - t0, 1)}
    print(rep.summary(), flush=True)
    cyc = summ["expected_cycles_per_frame"]
    fps = {"at_fmax": round(rep.fmax_mhz * 1e6 / cyc, 1) if rep.fmax_mhz else None,
           "at_core_clock": round(mhz * 1e6 / cyc, 1)}
    return {**head, "fits": True, "lut": rep.lut, "ff": rep.ff, "dsp": rep.dsp, "bram": rep.bram,
            "available": rep.available, "utilization": {k: v for k, v in rep.utilization.items() if v.get("used")},
            "fmax_mhz": rep.fmax_mhz, "fmax_by_clock": rep.fmax_by_clock, "target_mhz": rep.target_mhz,
            "timing_met": rep.timing_met, "frames_per_second": fps,
            "critical_path": critical_path(Path(rep.logs["nextpnr"])), "bitstream": rep.bitstream,
            "bitstream_bytes": Path(rep.bitstream).stat().st_size, "tools": rep.tools,
            "seconds": round(time.monotonic() - t0, 1)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=("mega", "mega-large", "primer", "primer-tiny"), required=True)
    ap.add_argument("--primer-mhz", type=float, default=54.0)
    ap.add_argument("--baud", type=int, default=115200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--large-base-e", type=int, default=80)
    ap.add_argument("--large-max-multipliers", type=int, default=48)
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")          # Amaranth's UnusedElaboratable noise from the plan stage
    OUT.mkdir(parents=True, exist_ok=True)
    res = build(args.only, primer_mhz=args.primer_mhz, seed=args.seed, baud=args.baud,
                large_base_e=args.large_base_e, large_mult=args.large_max_multipliers)
    suffix = f"-e{args.large_base_e}" if args.only == "mega-large" else ""
    (OUT / f"summary_{args.only}{suffix}.json").write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
