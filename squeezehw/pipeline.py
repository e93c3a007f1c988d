"""Shared steps of the command line: resolve a MODEL argument, a folding, a set of images.

``MODEL`` may be an integer-model file or the word ``default``: the built-in MNIST model quantized
exactly as ``squeezehw quantize`` does with no arguments (cached under build/, keyed by the
committed weights' hash so a retrained model is re-quantized; see ``outputs.cache_dir``).
"""
from __future__ import annotations

import hashlib
import math

import numpy as np

from .errors import UserError
from .outputs import cache_dir
from .plan.folding import DEFAULT_SPEED_SLACK, Folding, auto_fold, default_folding
from .quant.intmodel import IntModel

DEFAULT_CALIB = 512


def default_int_model(progress: bool = True) -> IntModel:
    from .quant.default_model import DEFAULT_CONFIG_PATH, DEFAULT_WEIGHTS_PATH, load_default_network, mnist_split
    from .quant.quantize import quantize
    key = hashlib.sha256(DEFAULT_WEIGHTS_PATH.read_bytes() + DEFAULT_CONFIG_PATH.read_bytes()).hexdigest()[:12]
    cache = cache_dir() / f"default-w8-{key}.npz"
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
                    target_cycles: int | None = None, speed_slack: float = DEFAULT_SPEED_SLACK,
                    **budget) -> Folding:
    """``None``/``default``: the default folding; ``auto``: balanced for the given target; else a file."""
    if arg in (None, "default") and max_multipliers is None and target_cycles is None:
        fold = default_folding(model)
    elif arg in (None, "default", "auto"):
        if max_multipliers is None and target_cycles is None:
            raise UserError("--fold auto needs a target: --max-multipliers N, --max-dsp N, --board NAME, or "
                            "--target-fps F with --clock MHz")
        fold = auto_fold(model, max_multipliers=max_multipliers, target_cycles=target_cycles,
                         speed_slack=speed_slack, **budget)
    else:
        fold = Folding.load(arg, model_name=model.name)
    fold.validate(model)
    return fold


def add_fold_arguments(p) -> None:
    g = p.add_argument_group("folding (parallelism per layer)")
    g.add_argument("--fold", metavar="FILE|auto|default", default=None,
                   help="a folding file (from `squeezehw fold`), `auto` (balanced for a target below; what "
                        "a budget, --board or --target-fps gives when --fold is left out), or `default` "
                        "(balanced for a small array, whatever the board; the default without a target)")
    g.add_argument("--max-multipliers", type=int, metavar="N", dest="max_multipliers",
                   help="auto folding: budget of MAC multipliers (PE x SIMD summed over the convs)")
    g.add_argument("--max-dsp", type=int, metavar="N", dest="max_dsp",
                   help="auto folding: budget of DSPs, counting every multiplier the design instantiates "
                        "(MAC, requantisation, bypass add) in the --board's DSP cells (ECP5 MULT18X18D "
                        "by default)")
    g.add_argument("--max-bram", type=int, metavar="N",
                   help="refuse a folding whose memories need more than N block RAMs (counted in the "
                        "--board's native blocks; ECP5 DP16KD by default)")
    g.add_argument("--board", metavar="NAME",
                   help="auto folding: the board's DSP count is the --max-dsp budget (every multiplier "
                        "counted), and its block RAM is checked; a build uses its multiplier primitive")
    g.add_argument("--target-fps", type=float, metavar="F", help="auto folding: frames per second to reach")
    g.add_argument("--speed-slack", type=float, default=100 * DEFAULT_SPEED_SLACK, metavar="PCT",
                   help="auto folding with a budget: give up at most PCT %% of frame rate for a folding "
                        "with fewer multiplier-cycles per frame (higher MAC efficiency); 0 = the "
                        f"fastest folding in the budget (default {100 * DEFAULT_SPEED_SLACK:g})")
    g.add_argument("--clock", type=float, default=100.0, metavar="MHZ",
                   help="clock for --target-fps and for reported frame rates (default 100 MHz)")


def add_weights_argument(g) -> None:
    g.add_argument("--weights", choices=("auto", "dense"), default=None,
                   help="weight storage: `auto` (the default: a conv whose model carries a per-layer "
                        "codebook, from `squeezehw quantize --codebook`, keeps its compressed weights, "
                        "decoded at stream rate in front of its MVU; the others dense) or `dense` "
                        "(every weight w_bits wide)")


def add_target_arguments(p) -> None:
    """What the hardware is built as (squeezehw.plan.lowering.Target): build and fold take these."""
    g = p.add_argument_group("hardware target")
    g.add_argument("--requant", choices=("parallel", "serial"), default=None,
                   help="requantiser: `parallel` (one multiplier per PE lane, the default) or `serial` "
                        "(digit-serial in LUTs, no DSP; same throughput, for parts with few DSPs)")
    from .hw.multiplier import DSP_FAMILIES
    g.add_argument("--dsp", "--multiplier", dest="dsp", choices=DSP_FAMILIES, default=None,
                   help="multiplier primitive: `generic` (`*` between registers, any tool and simulator) or "
                        "`ecp5` (MULT18X18D instances using the DSP's own input/output registers: without "
                        "them Yosys leaves the registers in the fabric and the multiplies limit Fmax); "
                        "default: the --board's (ecp5 for ulx3s-85f / ecp5-85f), else generic")


# flags that shape a build; `squeezehw build --config FILE` refuses them (the file says it all)
CONFIG_FLAGS = {"fold": "--fold", "max_multipliers": "--max-multipliers", "max_dsp": "--max-dsp",
                "max_bram": "--max-bram", "board": "--board", "target_fps": "--target-fps",
                "requant": "--requant", "dsp": "--dsp", "weights": "--weights"}


def config_from_args(args, model_arg: str | None = None):
    """The BuildConfig the command-line flags say (squeezehw/plan/config.py)."""
    from .plan.config import BuildConfig
    fold = args.fold
    return BuildConfig(model=model_arg or getattr(args, "model", None) or "default", fold=fold,
                       max_multipliers=args.max_multipliers, max_dsp=getattr(args, "max_dsp", None),
                       max_bram=getattr(args, "max_bram", None), target_fps=args.target_fps,
                       speed_slack=getattr(args, "speed_slack", 100 * DEFAULT_SPEED_SLACK),
                       board=getattr(args, "board", None), multiplier=getattr(args, "dsp", None),
                       requant=getattr(args, "requant", None) or "parallel",
                       weights=getattr(args, "weights", None) or "auto", clock_mhz=args.clock)


def folding_for_config(config, model: IntModel) -> Folding:
    """The folding a BuildConfig asks for: inline, a file, the default, or auto-folded for its budget.
    A DSP budget (``max_dsp``, or the board's DSP count) counts every multiplier of the build plan
    (MAC, requantisation, bypass add) in the board's DSP cells."""
    target = None
    for opt, v in (("--clock", config.clock_mhz), ("--target-fps", config.target_fps)):
        if v is not None and not (math.isfinite(v) and v > 0):
            raise UserError(f"{opt} must be a positive number, not {v}")
    if config.target_fps is not None:
        target = int(config.clock_mhz * 1e6 / config.target_fps)
        if target < 1:
            from .plan.folding import min_cycles
            best = min_cycles(model)
            raise UserError(f"--target-fps {config.target_fps:g} at {config.clock_mhz:g} MHz leaves less than one "
                            f"clock cycle per frame; {model.name} reaches at most "
                            f"{config.clock_mhz * 1e6 / best:,.1f} frames/s ({best} cycles per frame) at that clock")
    board = config.board_entry()
    dsp_budget = config.max_dsp if config.max_dsp is not None else (board.resources.dsp if board else None)
    budgets = [b for b in (config.max_multipliers, config.max_dsp) if b is not None]
    if len(budgets) > 1 or (budgets or board) and target is not None:
        raise UserError("give one target: --max-multipliers, --max-dsp/--board, or --target-fps")
    for name, b in (("--max-multipliers", config.max_multipliers), ("--max-dsp", config.max_dsp)):
        if b is not None and b < 1:
            raise UserError(f"{name} must be positive, got {b}")
    if not 0 <= config.speed_slack < 100:
        raise UserError(f"--speed-slack must be a percentage in [0, 100), got {config.speed_slack}")
    if isinstance(config.fold, dict):
        fold = Folding.from_dict(config.fold)
        fold.validate(model)
        from .plan.folding import stages
        return Folding({s.name: fold[s.name] for s in stages(model)})     # stream order, as written
    if config.fold == "default":
        given = [flag for flag, v in (("--max-multipliers", config.max_multipliers), ("--max-dsp", config.max_dsp),
                                      ("--target-fps", config.target_fps)) if v is not None]
        if given:
            raise UserError(f"--fold default is the default folding; {' and '.join(given)} asks for an auto "
                            "folding: use --fold auto (or leave --fold out)")
        fold = resolve_folding(None, model)
        check_bram(config, model, fold)
        return fold
    kw = {}
    if config.max_multipliers is None and dsp_budget is not None and target is None and \
            config.fold in (None, "auto"):
        from .boards.registry import get_board
        from .plan.lowering import conv_facts, lower
        facts, tgt = conv_facts(model), config.target()
        where = board.name if board else "ecp5-85f"
        kw = dict(count=lambda f: lower(model, f, tgt, facts=facts).dsp(where),
                  what=f"{get_board(where).resources.dsp_cell} on {where} (every multiplier: MAC, "
                       "requantisation, bypass add)")
        budget = dsp_budget
    else:
        budget = config.max_multipliers
    fold = resolve_folding(config.fold, model, max_multipliers=budget,
                           target_cycles=target, speed_slack=config.speed_slack / 100, **kw)
    check_bram(config, model, fold)
    return fold


def folding_from_args(args, model: IntModel) -> Folding:
    return folding_for_config(config_from_args(args, getattr(args, "model", None)), model)


def check_bram(config, model: IntModel, fold: Folding) -> None:
    """Refuse a folding whose memories exceed the config's max_bram or its board's block RAM."""
    limit, where = config.max_bram, "--max-bram"
    board = config.board_entry()
    if board is not None and limit is None:
        limit, where = board.resources.bram, f"the {board.name}'s block RAM"
    if limit is None:
        return
    from .plan.lowering import lower
    from .plan.resources import estimate, spill_to_logic
    plan = lower(model, fold, config.target())
    est = estimate(plan, board or "ecp5-85f")
    if est["block_ram"] > limit:
        spill = ""
        if board is not None and config.max_bram is None:
            try:                # memories built from logic may close the gap: say how
                boxes = spill_to_logic(plan, board.name)
                fitted = estimate(plan, board.name, boxes)
                spill = (f", or build {len(boxes)} memory shapes from logic ({fitted['block_ram']} blocks, "
                         f"{fitted['lut']} LUTs estimated): `squeezehw synth ... "
                         + " ".join(f"--logic-memory {k}:{d}:{w}" for k, d, w in boxes) + "`")
            except UserError:
                pass
        raise UserError(f"{model.name} with this folding needs {est['block_ram']} {est['block_ram_cell']} "
                        f"blocks, {est['block_ram'] - limit} more than {where} ({limit}); use fewer weight "
                        f"bits, a smaller model or a bigger device{spill}")


def sim_images(model: IntModel, *, images_dir=None, random_n=None, limit=None, seed=0, progress=True):
    """(images uint8 (N,C,H,W), labels or None, description)."""
    if images_dir and random_n:
        raise UserError("give --images or --random, not both")
    if random_n:
        rng = np.random.default_rng(seed)
        x = rng.integers(0, 256, size=(random_n, model.in_ch, model.height, model.width), dtype=np.uint8)
        return x, None, f"{random_n} random images"
    if images_dir:
        from .frontend.images import load_image_folder
        s = load_image_folder(images_dir, height=model.height, width=model.width, channels=model.in_ch,
                              resize=model.resize, limit=limit, progress=progress)
        return s.images, s.labels, str(images_dir)
    if model.info.get("dataset") == "mnist-default":
        from .quant.default_model import default_eval_images
        x, y = default_eval_images(limit or 20)
        return x, y, "MNIST held-out split"
    raise UserError("no images: give --images DIR (ImageFolder layout) or --random N")
