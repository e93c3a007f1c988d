"""Shared steps of the command line: resolve a MODEL argument, a folding, a set of images.

``MODEL`` may be an integer-model file or the word ``default``: the built-in MNIST model quantized
exactly as ``squeezehw quantize`` does with no arguments (cached under build/, keyed by the
committed weights' hash so a retrained model is re-quantized).
"""
from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np

from .errors import UserError
from .folding import DEFAULT_SPEED_SLACK, Folding, auto_fold, default_folding
from .intmodel import IntModel

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CALIB = 512


def default_int_model(progress: bool = True) -> IntModel:
    from .default_model import DEFAULT_CONFIG_PATH, DEFAULT_WEIGHTS_PATH, load_default_network, mnist_split
    from .quantize import quantize
    key = hashlib.sha256(DEFAULT_WEIGHTS_PATH.read_bytes() + DEFAULT_CONFIG_PATH.read_bytes()).hexdigest()[:12]
    cache = REPO / "build" / f"default-w8-{key}.npz"
    if cache.is_file():
        return IntModel.load(cache)
    train_x, _, _, _ = mnist_split()
    model = quantize(load_default_network(), train_x[:DEFAULT_CALIB], w_bits=8, progress=progress,
                     source="built-in default model")
    model.info["dataset"] = "mnist-default"
    model.save(cache)
    return model


def resolve_model(arg: str | None, progress: bool = True) -> IntModel:
    if arg in (None, "default"):
        return default_int_model(progress)
    return IntModel.load(arg)


def resolve_folding(arg: str | None, model: IntModel, *, max_multipliers: int | None = None,
                    target_cycles: int | None = None, speed_slack: float = DEFAULT_SPEED_SLACK) -> Folding:
    """``None``/``default``: the default folding; ``auto``: balanced for the given target; else a file."""
    if arg in (None, "default") and max_multipliers is None and target_cycles is None:
        fold = default_folding(model)
    elif arg in (None, "default", "auto"):
        if max_multipliers is None and target_cycles is None:
            raise UserError("--fold auto needs a target: --max-multipliers N, --board NAME, or "
                            "--target-fps F with --clock MHz")
        fold = auto_fold(model, max_multipliers=max_multipliers, target_cycles=target_cycles,
                         speed_slack=speed_slack)
    else:
        fold = Folding.load(arg, model_name=model.name)
    fold.validate(model)
    return fold


def add_fold_arguments(p) -> None:
    g = p.add_argument_group("folding (parallelism per layer)")
    g.add_argument("--fold", metavar="FILE|auto|default", default=None,
                   help="a folding file (from `squeezehw fold`), `auto` (balanced for a target below), "
                        "or `default` (balanced for a small array; the default)")
    g.add_argument("--max-multipliers", "--max-dsp", type=int, metavar="N", dest="max_multipliers",
                   help="auto folding: budget of MAC multipliers (DSPs)")
    g.add_argument("--max-bram", type=int, metavar="N",
                   help="refuse a folding whose memories need more than N block RAMs (counted in the "
                        "--board's native blocks; ECP5 DP16KD by default)")
    g.add_argument("--board", metavar="NAME",
                   help="auto folding: use the board's DSP count as the budget and check its block RAM")
    g.add_argument("--target-fps", type=float, metavar="F", help="auto folding: frames per second to reach")
    g.add_argument("--speed-slack", type=float, default=100 * DEFAULT_SPEED_SLACK, metavar="PCT",
                   help="auto folding with a budget: give up at most PCT %% of frame rate for a folding "
                        "with fewer multiplier-cycles per frame (higher MAC efficiency); 0 = the "
                        f"fastest folding in the budget (default {100 * DEFAULT_SPEED_SLACK:g})")
    g.add_argument("--clock", type=float, default=100.0, metavar="MHZ",
                   help="clock for --target-fps and for reported frame rates (default 100 MHz)")


def folding_from_args(args, model: IntModel) -> Folding:
    budget = args.max_multipliers
    if getattr(args, "board", None) is not None:
        from .boards import get_board
        budget = get_board(args.board).resources.dsp
    target = None
    for opt, v in (("--clock", args.clock), ("--target-fps", args.target_fps)):
        if v is not None and not (math.isfinite(v) and v > 0):
            raise UserError(f"{opt} must be a positive number, not {v}")
    if args.target_fps:
        target = int(args.clock * 1e6 / args.target_fps)
        if target < 1:
            from .folding import min_cycles
            best = min_cycles(model)
            raise UserError(f"--target-fps {args.target_fps:g} at {args.clock:g} MHz leaves less than one clock "
                            f"cycle per frame; {model.name} reaches at most {args.clock * 1e6 / best:,.1f} "
                            f"frames/s ({best} cycles per frame) at that clock")
    if budget is not None and target is not None:
        raise UserError("give either a resource budget (--max-multipliers/--board) or --target-fps, not both")
    if budget is not None and budget < 1:
        raise UserError(f"--max-multipliers must be positive, got {budget}")
    slack = getattr(args, "speed_slack", 100 * DEFAULT_SPEED_SLACK)
    if not 0 <= slack < 100:
        raise UserError(f"--speed-slack must be a percentage in [0, 100), got {slack}")
    fold = resolve_folding(args.fold, model, max_multipliers=budget, target_cycles=target,
                           speed_slack=slack / 100)
    check_bram(args, model, fold)
    return fold


def check_bram(args, model: IntModel, fold: Folding) -> None:
    """Refuse a folding whose memories exceed --max-bram or the --board's block RAM."""
    limit, family, where = getattr(args, "max_bram", None), "ecp5", "--max-bram"
    if getattr(args, "board", None) is not None:
        from .boards import get_board
        board = get_board(args.board)
        from .resources import family_of
        family = family_of(board)
        if limit is None:
            limit, where = board.resources.bram, f"the {board.name}'s block RAM"
    if limit is None:
        return
    from .resources import estimate
    est = estimate(model, fold, family)
    if est["block_ram"] > limit:
        raise UserError(f"{model.name} with this folding needs {est['block_ram']} {est['block_ram_cell']} "
                        f"blocks, {est['block_ram'] - limit} more than {where} ({limit}); use fewer weight "
                        "bits, a smaller model or a bigger device")


def sim_images(model: IntModel, *, images_dir=None, random_n=None, limit=None, seed=0, progress=True):
    """(images uint8 (N,C,H,W), labels or None, description)."""
    if images_dir and random_n:
        raise UserError("give --images or --random, not both")
    if random_n:
        rng = np.random.default_rng(seed)
        x = rng.integers(0, 256, size=(random_n, model.in_ch, model.height, model.width), dtype=np.uint8)
        return x, None, f"{random_n} random images"
    if images_dir:
        from .images import load_image_folder
        s = load_image_folder(images_dir, height=model.height, width=model.width, channels=model.in_ch,
                              resize=model.resize, limit=limit, progress=progress)
        return s.images, s.labels, str(images_dir)
    if model.info.get("dataset") == "mnist-default":
        from .default_model import default_eval_images
        x, y = default_eval_images(limit or 20)
        return x, y, "MNIST held-out split"
    raise UserError("no images: give --images DIR (ImageFolder layout) or --random N")
