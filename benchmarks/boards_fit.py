"""Board builds to bitstreams (a benchmark, not CI): the UART board tops of boards/top.py.

* ULX3S-85F: the default MNIST model (squeezehw.pipeline.default_int_model, default_folding) in
  ULX3STop (25 MHz -> EHXPLLL -> core clock, default 50 MHz), 115200 baud.
* iCEBreaker (UP5K: 8 DSPs, 30 EBR, 5280 LUTs): a small random SqueezeNet-family integer model
  (1x12x12 input, conv1 8 channels, two tiny Fire modules, 4 classes) folded with
  auto_fold(max_multipliers=8) in ICEBreakerTop (12 MHz -> SB_PLL40_PAD -> 24 MHz).

Each build goes through squeezehw.synth.build_board (Yosys + nextpnr + ecppack/icepack, YoWASP);
the reports are printed and written to build/boards_fit/<board>/report.json, and a summary to
build/boards_fit/summary.json.

    .venv/bin/python benchmarks/boards_fit.py [--only ulx3s|icebreaker] [--ulx3s-mhz 50] [--seed 1]
"""
import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from boards.top import ICEBreakerTop, ULX3STop  # noqa: E402
from squeezehw.folding import auto_fold, default_folding  # noqa: E402
from squeezehw.hw.accelerator import Accelerator  # noqa: E402
from squeezehw.pipeline import default_int_model  # noqa: E402
from squeezehw.random_model import random_model  # noqa: E402
from squeezehw.errors import UserError  # noqa: E402
from squeezehw.synth import build_board  # noqa: E402

OUT = REPO / "build" / "boards_fit"


def small_model():
    return random_model(np.random.default_rng(7), in_ch=1, size=12, conv1=(8, 3, 1, 0),
                        fires=((2, 4, 4, "none"), (4, 4, 4, "none")), pool_after=(0,), classes=4,
                        name="tiny_up5k")


def build(which: str, *, ulx3s_mhz: float, seed: int, baud: int, ice40_mult: int = 8) -> dict:
    if which == "ulx3s":
        model = default_int_model(progress=False)
        fold = default_folding(model)
        top = ULX3STop(Accelerator(model=model, folding=fold), baud=baud, core_hz=ulx3s_mhz * 1e6)
        board = "ulx3s-85f"
    else:
        model = small_model()
        fold = auto_fold(model, max_multipliers=ice40_mult)
        top = ICEBreakerTop(Accelerator(model=model, folding=fold), baud=baud)
        board = "icebreaker"
    summ = fold.summary(model)
    t0 = time.monotonic()
    head = {"board": board, "model": model.name, "multipliers": summ["multipliers"],
            "expected_cycles_per_frame": summ["expected_cycles_per_frame"], "core_mhz": top.core_hz / 1e6,
            "pll": top.pll, "baud": baud}
    try:
        rep = build_board(top, board=board, out_dir=OUT / which, seed=seed)
    except UserError as e:          # does not fit: record why (nextpnr's counts) instead of stopping
        print(f"{board}: {e}", flush=True)
        return {**head, "fits": False, "error": str(e), "seconds": round(time.monotonic() - t0, 1)}
    print(rep.summary(), flush=True)
    return {**head, "fits": True, "lut": rep.lut, "ff": rep.ff, "dsp": rep.dsp, "bram": rep.bram,
            "spram": rep.spram, "available": rep.available, "fmax_mhz": rep.fmax_mhz,
            "fmax_by_clock": rep.fmax_by_clock, "target_mhz": rep.target_mhz, "timing_met": rep.timing_met,
            "bitstream": rep.bitstream, "tools": rep.tools, "seconds": round(time.monotonic() - t0, 1)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=("ulx3s", "icebreaker"))
    ap.add_argument("--ulx3s-mhz", type=float, default=50.0)
    ap.add_argument("--baud", type=int, default=115200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--ice40-max-multipliers", type=int, default=8)
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")          # Amaranth's UnusedElaboratable noise from the plan stage
    OUT.mkdir(parents=True, exist_ok=True)
    results = {}
    for which in ("icebreaker", "ulx3s"):
        if args.only in (None, which):
            results[which] = build(which, ulx3s_mhz=args.ulx3s_mhz, seed=args.seed, baud=args.baud,
                                   ice40_mult=args.ice40_max_multipliers)
            (OUT / f"summary_{which}.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
