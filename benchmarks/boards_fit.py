"""Board builds to bitstreams (a benchmark, not CI): the UART board tops of boards/top.py.

* ``ulx3s``: the default MNIST model (squeezehw.pipeline.default_int_model, default_folding) in
  ULX3STop (25 MHz -> EHXPLLL -> core clock, ``--ulx3s-mhz``, default 100 MHz), 115200 baud.
* ``ulx3s-large``: the largest SqueezeNet-family member found whose memories fit the ECP5-85F's
  208 DP16KD by squeezehw.plan.resources.estimate: SqueezeNet v1.1's layout (8 Fires, pools after conv1,
  Fire 2 and Fire 4) at half width (base_e = incr_e = 64, conv1 32 channels), 3x64x64 input,
  10 classes, random int8 weights (squeezehw.quant.random_model, seed 1), auto_fold(max_multipliers=48),
  in ULX3STop at ``--ulx3s-mhz``; nextpnr runs with ``--router router2``.  (base_e 72 and 80
  were estimated at 236 and 256 DP16KD; Yosys used 148 for base_e 64.)
* ``icebreaker`` (UP5K: 8 DSPs, 30 EBR, 5280 LUTs): a tiny SqueezeNet-family member
  (``tiny_family_up5k``: 1x10x10 input, conv1 8 channels 3x3, one Fire (s=2, e1=4, e3=4, no
  bypass), no max-pool, 4 classes; random weights, seed 7), one multiplier per conv (auto_fold
  with 5), built with ``--requant serial`` (the opt-in LUT requantiser: the 5 SB_MAC16 are the MACs
  only), in ICEBreakerTop (12 MHz -> SB_PLL40_PAD -> ``--ice40-mhz``, default 18 MHz).
  The earlier 12x12 member with a max-pool no longer fits (5,846 LC) since the ECP5 timing
  registers (skid buffers, DSP operand/product stages) were added.

Each build takes the command line's path (the random models are saved as integer-model files
first): a BuildConfig (board, folding, requantiser, clock) -> ``squeezehw build`` (write_design,
into build/boards_fit/<which>/design) -> ``squeezehw bitstream`` (squeezehw.toolchain.build.board_bitstream:
the board's UART top, squeezehw.toolchain.synth.build_board with the registry's synth and nextpnr options,
YoWASP); the reports are printed and written to build/boards_fit/<which>/report.json, a summary
(with cycles per frame from the build plan's cost model, the plan's resource estimate, and frames/s
at the achieved Fmax) to build/boards_fit/summary_<which>.json.

    .venv/bin/python benchmarks/boards_fit.py [--only ulx3s|ulx3s-large|icebreaker] [--ulx3s-mhz 100]
                                              [--ice40-mhz 18] [--seed 1] [--large-base-e 64] [--large-max-bram 256]
"""
import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

from squeezehw.errors import UserError  # noqa: E402
from squeezehw.pipeline import default_int_model, folding_for_config, resolve_model  # noqa: E402
from squeezehw.plan.config import BuildConfig  # noqa: E402
from squeezehw.plan.folding import default_folding  # noqa: E402
from squeezehw.quant.random_model import random_model  # noqa: E402
from squeezehw.toolchain.build import board_bitstream, write_design  # noqa: E402

OUT = REPO / "build" / "boards_fit"


def tiny_up5k_model():
    """conv1 + one Fire + head: the smallest useful SqueezeNet-family member (FamilyConfig below)."""
    from squeezehw.frontend.family import FamilyConfig
    cfg = FamilyConfig(name="tiny_family_up5k", base_e=8, incr_e=0, pct3x3=0.5, sr=0.25, freq=1, num_fire=1,
                       conv1_channels=8, conv1_kernel=3, conv1_stride=1, conv1_padding=0, pool_after=(),
                       input_size=10, in_channels=1, classes=4, mean=(0.5,), std=(0.25,))
    return cfg, _random_member(cfg, seed=7)


def large_ulx3s_model(base_e: int = 64):
    from squeezehw.frontend.family import SQUEEZENET1_1
    name = "sq11_half_64px" if base_e == 64 else f"sq11_e{base_e}_64px"
    cfg = SQUEEZENET1_1.replace(name=name, base_e=base_e, incr_e=base_e, conv1_channels=base_e // 2,
                                input_size=64, classes=10, resize=None)
    return cfg, _random_member(cfg, seed=1)


def _random_member(cfg, seed):
    fires = tuple((f.squeeze, f.expand1x1, f.expand3x3, f.bypass) for f in cfg.fires())
    return random_model(np.random.default_rng(seed), in_ch=cfg.in_channels, size=cfg.input_size,
                        conv1=(cfg.conv1_channels, cfg.conv1_kernel, cfg.conv1_stride, cfg.conv1_padding),
                        fires=fires, pool_after=cfg.pool_after, classes=cfg.classes, name=cfg.name)


def build(which: str, *, ulx3s_mhz: float, ice40_mhz: float, seed: int, baud: int,
          large_mult: int = 48, large_base_e: int = 64, large_max_bram: int | None = None) -> dict:
    cfg = None
    out_name = which if which != "ulx3s-large" or large_base_e == 64 else f"{which}-e{large_base_e}"
    (OUT / out_name).mkdir(parents=True, exist_ok=True)
    if which == "ulx3s":
        # the default model with its default folding (not auto-folded for the board's DSPs)
        fold = json.loads(default_folding(default_int_model(progress=False)).to_json())
        config = BuildConfig(model="default", fold={"layers": fold["layers"]}, board="ulx3s-85f",
                             clock_mhz=ulx3s_mhz)
    else:
        cfg, model = large_ulx3s_model(large_base_e) if which == "ulx3s-large" else tiny_up5k_model()
        path = OUT / out_name / f"{model.name}.npz"
        model.save(path)
        if which == "ulx3s-large":
            config = BuildConfig(model=str(path), fold="auto", max_multipliers=large_mult, board="ulx3s-85f",
                                 clock_mhz=ulx3s_mhz, max_bram=large_max_bram)
        else:
            config = BuildConfig(model=str(path), fold="auto", max_multipliers=len(model.convs()),
                                 board="icebreaker", requant="serial", clock_mhz=ice40_mhz)
    # `squeezehw build` ...
    model = resolve_model(config.model, progress=False)
    fold = folding_for_config(config, model)
    design = write_design(model, fold, OUT / out_name / "design", config=config, progress=False)
    est = design["estimated_resources"]["board"]
    summ = design["totals"]
    head = {"board": config.board, "model": model.name, "family_config": cfg.to_dict() if cfg else None,
            "weights": int(sum(c.weight.size for c in model.convs())),
            "weight_bits": int(sum(c.weight.size * c.w_bits for c in model.convs())),
            "requant": config.requant, "multipliers": summ["multipliers"],
            "requant_multipliers": summ["requant_multipliers"], "add_multipliers": summ["add_multipliers"],
            "expected_cycles_per_frame": summ["expected_cycles_per_frame"], "core_mhz": config.clock_mhz,
            "estimate": {k: est[k] for k in ("block_ram", "dsp", "lut", "ff")}, "baud": baud,
            "config": design["config"]}
    t0 = time.monotonic()
    # ... then `squeezehw bitstream`
    try:
        rep, plan, top = board_bitstream(OUT / out_name / "design", out_dir=OUT / out_name, baud=baud, seed=seed)
    except UserError as e:          # does not fit: record why (nextpnr's counts) instead of stopping
        print(f"{config.board}: {e}", flush=True)
        return {**head, "fits": False, "error": str(e), "seconds": round(time.monotonic() - t0, 1)}
    print(rep.summary(), flush=True)
    head["pll"] = top.pll
    cyc = summ["expected_cycles_per_frame"]
    fps = {"at_fmax": round(rep.fmax_mhz * 1e6 / cyc, 1) if rep.fmax_mhz else None,
           "at_core_clock": round(config.clock_mhz * 1e6 / cyc, 1)}
    return {**head, "fits": True, "lut": rep.lut, "ff": rep.ff, "dsp": rep.dsp, "bram": rep.bram,
            "spram": rep.spram, "available": rep.available, "fmax_mhz": rep.fmax_mhz,
            "fmax_by_clock": rep.fmax_by_clock, "target_mhz": rep.target_mhz, "timing_met": rep.timing_met,
            "frames_per_second": fps, "critical_path": critical_path(Path(rep.logs["nextpnr"])),
            "seed": rep.seed, "bitstream": rep.bitstream, "tools": rep.tools,
            "seconds": round(time.monotonic() - t0, 1)}


def critical_path(tim: Path, lines: int = 12) -> list[str]:
    """The start, end and the biggest steps of nextpnr's first 'Critical path report' in its log."""
    if not tim.exists():
        return []
    text = tim.read_text(errors="replace").splitlines()
    try:
        k = next(i for i, l in enumerate(text) if "Critical path report for clock" in l)
    except StopIteration:
        return []
    block = []
    for l in text[k:]:
        if block and not l.startswith("Info:"):
            break
        block.append(l)
        if "Max frequency" in l or (len(block) > 1 and l.strip() in ("Info:", "")):
            break
    return block[:2] + [l for l in block[2:] if "Source" in l or "Sink" in l or " ns logic" in l
                        or "ns routing" in l][:lines]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=("ulx3s", "ulx3s-large", "icebreaker"))
    ap.add_argument("--ulx3s-mhz", type=float, default=100.0)
    ap.add_argument("--ice40-mhz", type=float, default=18.0)
    ap.add_argument("--baud", type=int, default=115200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--large-max-multipliers", type=int, default=48)
    ap.add_argument("--large-base-e", type=int, default=64,
                    help="base_e = incr_e of the ulx3s-large member (conv1 gets base_e/2 channels); "
                         "not 64: results in build/boards_fit/ulx3s-large-e<N>")
    ap.add_argument("--large-max-bram", type=int, default=256,
                    help="block-RAM budget of the ulx3s-large build's estimate check (--max-bram): "
                         "squeezehw.plan.resources.estimate overcounts ECP5 DP16KD (base_e 80: 244 "
                         "estimated, 190 placed at 971916f), so nextpnr decides whether it fits")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")          # Amaranth's UnusedElaboratable noise from the plan stage
    OUT.mkdir(parents=True, exist_ok=True)
    results = {}
    for which in ("icebreaker", "ulx3s", "ulx3s-large"):
        if args.only in (None, which):
            results[which] = build(which, ulx3s_mhz=args.ulx3s_mhz, ice40_mhz=args.ice40_mhz, seed=args.seed,
                                   baud=args.baud, large_mult=args.large_max_multipliers,
                                   large_base_e=args.large_base_e, large_max_bram=args.large_max_bram)
            suffix = f"-e{args.large_base_e}" if which == "ulx3s-large" and args.large_base_e != 64 else ""
            (OUT / f"summary_{which}{suffix}.json").write_text(json.dumps(results[which], indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
