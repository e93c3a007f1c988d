"""``squeezehw quantize``: float SqueezeNet + calibration images -> integer model file."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from ..errors import UserError

NAME = "quantize"
HELP = "quantize a float SqueezeNet-family model to an integer model file"
ORDER = 20
DESCRIPTION = """\
Post-training quantisation (docs/quantization.md): weights symmetric per output channel with
--bits bits, uint8 activations with one scale per tensor calibrated on images, int32 biases,
16-bit requantisation multipliers.  The result is one .npz file that `squeezehw eval`, the
golden model and the hardware generator read.

With no --arch/--weights the built-in default model (a small MNIST SqueezeNet) is quantized,
calibrated on its MNIST training split, and its held-out accuracy is stored in the file.

examples:
  squeezehw quantize -o default.npz
  squeezehw quantize --arch squeezenet1_1 --weights squeezenet1_1.npz --calib photos/ -o sq11.npz
  squeezehw quantize --arch squeezenet1_1 --weights w.pth --calib photos/ --bits 4 --board zcu102
  squeezehw quantize --arch squeezenet1_0 --weights dc.npz --calib photos/ --codebook keep -o dc8.npz
  squeezehw quantize --arch squeezenet1_1 --weights w.npz --calib photos/ --codebook cluster --bits 6

Shared weights (docs/compression.md): --codebook keeps a Deep Compression model's own shared values
(keep), or clusters each layer into at most 2**bits values with k-means and GPTQ-style rounding
(cluster); auto picks keep when the weights look Deep-Compressed.  Weights are then stored as
--bits-bit codebook indices, dense or as a bitmap of the non-zero weights, whichever is smaller.

The parameters must fit --budget bytes (or the block RAM of --board); otherwise nothing is
written and the command exits with status 2."""

DEFAULT_CALIB_PHOTOS = 64
DEFAULT_CALIB_DEFAULT_MODEL = 512
DEFAULT_DATASET_TAG = "mnist-default"


def add_arguments(p):
    from ..plan.memory import BOARDS, DEFAULT_BUDGET
    src = p.add_argument_group("model")
    src.add_argument("--arch", help="squeezenet1_0, squeezenet1_1 or a family JSON file (optional with an "
                                    ".onnx file: then it only sets the name and preprocessing)")
    src.add_argument("--weights", metavar="FILE",
                     help="float weights (.pth/.pt/.npz state dict), or a whole float model as .onnx")
    cal = p.add_argument_group("calibration")
    cal.add_argument("--calib", metavar="DIR",
                     help="calibration photos in ImageFolder layout (DIR/<class>/<image>)")
    cal.add_argument("--calib-count", type=int, metavar="N",
                     help=f"calibration images, evenly spaced over DIR (default {DEFAULT_CALIB_PHOTOS}; "
                          f"{DEFAULT_CALIB_DEFAULT_MODEL} for the default model)")
    cal.add_argument("--calibration", choices=("percentile", "max", "mse", "search"), default="percentile",
                     help="activation range rule (default: percentile); search: per tensor the range "
                          "(mse, percentile, max or scaled mse) that keeps the logits closest to the "
                          "float model's, docs/quantization.md")
    cal.add_argument("--percentile", type=float, default=99.99,
                     help="percentile of |activation| used as the range (default 99.99)")
    cal.add_argument("--bias-correction", action="store_true",
                     help="move each conv's bias so its mean output on the calibration images matches "
                          "the float model's (corrects the shift quantisation adds)")
    p.add_argument("--bits", type=int, default=8, metavar="N",
                   help="weight bits, 2..8 (default 8); with --codebook: index bits (2**N entries)")
    cb = p.add_argument_group("shared weights (docs/compression.md)")
    cb.add_argument("--codebook", choices=("keep", "cluster", "auto"),
                    help="codebook weights: keep the model's own shared values, cluster (k-means + "
                         "GPTQ), or auto (keep for a Deep Compression model, else cluster)")
    cb.add_argument("--per-channel-codebook", action="store_true",
                    help="one codebook per output channel instead of one per layer")
    cb.add_argument("--entry-bits", type=int, metavar="B",
                    help="codebook entry width, 2..16 (default 16 for keep, 12 for cluster)")
    cb.add_argument("--refine", choices=("gptq", "none"), default="gptq",
                    help="cluster: GPTQ-style rounding on the calibration images (default) or nearest")
    cb.add_argument("--encoding", choices=("auto", "dense-index", "bitmap"), default="auto",
                    help="index stream per layer (default auto: the smaller)")
    cb.add_argument("--weights-file", metavar="FILE",
                    help="also write the codebook weights as one lzma-coded file")
    bud = p.add_mutually_exclusive_group()
    bud.add_argument("--budget", type=int, metavar="BYTES",
                     help=f"on-chip parameter memory budget (default {DEFAULT_BUDGET:,})")
    bud.add_argument("--board", metavar="NAME",
                     help=f"use the block RAM of a board as the budget: {', '.join(sorted(BOARDS))}")
    ev = p.add_argument_group("accuracy (stored in the file)")
    ev.add_argument("--eval-images", metavar="DIR",
                    help="also measure float and integer accuracy on these photos (ImageFolder)")
    ev.add_argument("--eval-limit", type=int, metavar="N", help="at most N evaluation photos")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="integer model file to write (default: <model name>-w<bits>.npz)")
    p.add_argument("--json", action="store_true", help="print a JSON summary instead of a table")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _positive(name, v):
    if v is not None and v < 1:
        raise UserError(f"{name} must be a positive integer, got {v}")


def _is_int_model(path) -> bool:
    from ..quant.intmodel import FORMAT
    try:
        with np.load(path, allow_pickle=False) as z:
            return json.loads(str(z["__meta__"])).get("format") == FORMAT
    except Exception:        # anything unreadable is not one of ours
        return False


def _check_output(args, name: str) -> Path:
    """The output file, refused (UserError) when it is an input, a folder, or a file that is not an
    integer model: squeezehw replaces only its own files."""
    from ..outputs import check_output_file
    out = Path(args.output or f"{name}-w{args.bits}.npz")
    return check_output_file(out, "-o", inputs=[("--weights", args.weights), ("--arch", args.arch)],
                             kind="squeezehw integer model", is_same_kind=_is_int_model)


def summary_table(model, rep) -> str:
    shared = "compressed" in rep
    lines = [f"{model.name}: input {model.in_ch}x{model.height}x{model.width}, {model.classes} classes, "
             f"weights {model.w_bits} bits" + (" (codebook entries)" if shared else ""),
             f"  {'conv':<24}{'kernel':>8}{'in->out':>12}{'acc bits':>9}{'weight B':>11}"
             + (f"  {'encoding':<12}{'codebook':>10}" if shared else "")]
    for c in model.convs():
        extra = ""
        if c.codebook is not None:
            extra = f"  {c.encoding:<12}{f'{c.codebook.shape[0]}x{int(c.codebook_size.max())}':>10}"
        lines.append(f"  {c.name:<24}{f'{c.kernel}x{c.kernel}/{c.stride}':>8}"
                     f"{f'{c.in_ch}->{c.out_ch}':>12}{c.acc_bits:>9}{c.weight_bytes:>11,}{extra}")
    if shared:
        lines.append(compressed_lines(rep["compressed"]))
    lines.append(f"  weights {rep['weight_bytes']:,} B + biases {rep['bias_bytes']:,} B + requant "
                 f"{rep['requant_bytes'] + rep['add_bytes']:,} B = {rep['total_bytes']:,} B of "
                 f"{rep['budget_bytes']:,} B budget ({100 * rep['total_bytes'] / rep['budget_bytes']:.1f} %)")
    return "\n".join(lines)


def compressed_lines(comp: dict, file_bytes: int | None = None) -> str:
    """Sizes of a codebook model's weights: streams, codebooks, the lzma file, block RAMs per target."""
    out = [f"  codebook weights: streams {comp['stream_bytes']:,} B + codebooks {comp['codebook_bytes']:,} B"
           + (f"; lzma-coded file {file_bytes:,} B" if file_bytes is not None else "")]
    for name, t in comp["block_rams"].items():
        out.append(f"  block RAM on {name}: {t['stream_blocks']} {t['cell']} for the streams + "
                   f"{t['codebook_blocks']} for the codebooks (of {t['available']})")
    return "\n".join(out)


def codebook_spec(args, net):
    """A CodebookSpec from the options, or None; ``auto`` detects a Deep Compression model."""
    from ..quant.compression import CodebookSpec, looks_deep_compressed
    if args.codebook is None:
        for opt in ("per_channel_codebook", "entry_bits", "weights_file"):
            if getattr(args, opt) not in (None, False):
                raise UserError(f"--{opt.replace('_', '-')} needs --codebook keep/cluster/auto")
        if net.weights and looks_deep_compressed(net.weights):
            print("note: these weights look like Deep Compression (few shared values per layer, pruned "
                  "zeros); --codebook keep stores them exactly as codebook indices", file=sys.stderr)
        return None
    mode = args.codebook
    if mode == "auto":
        mode = "keep" if looks_deep_compressed(net.weights) else "cluster"
        print(f"--codebook auto: {mode} ({'a Deep Compression model' if mode == 'keep' else 'no shared values found'})",
              file=sys.stderr)
    return CodebookSpec(index_bits=args.bits, mode=mode, per_channel=args.per_channel_codebook,
                        entry_bits=args.entry_bits, refine=args.refine, encoding=args.encoding).validate()


def run(args) -> int:
    from ..frontend.images import list_image_folder, load_image_folder, load_images
    from ..plan.memory import DEFAULT_BUDGET, board_budget, check_budget
    from ..quant.evaluate import evaluate
    from ..quant.quantize import quantize
    progress = not args.no_progress
    if not 2 <= args.bits <= 8:                   # checked before any image is read
        raise UserError(f"--bits must be a whole number from 2 to 8, got {args.bits}")
    if not 0 < args.percentile <= 100:            # (also false for nan)
        raise UserError(f"--percentile must be a number in (0, 100], got {args.percentile}")
    _positive("--calib-count", args.calib_count)
    _positive("--eval-limit", args.eval_limit)
    if args.budget is not None and args.budget < 1:
        raise UserError(f"--budget must be a positive number of bytes, got {args.budget}")
    budget, what = args.budget or DEFAULT_BUDGET, "the budget"
    if args.board is not None:
        budget, what = board_budget(args.board), f"the block RAM of {args.board}"

    if args.eval_images:
        list_image_folder(args.eval_images)      # a missing folder is found now, not after calibrating
    default = args.arch is None and args.weights is None
    eval_set = None
    if default:
        from ..quant.default_model import load_default_network, mnist_split
        if args.calib:
            raise UserError("--calib needs --arch and --weights; the default model calibrates on "
                            "its own MNIST training split")
        net = load_default_network()
        train_x, _, test_x, test_y = mnist_split()
        count = min(args.calib_count or DEFAULT_CALIB_DEFAULT_MODEL, len(train_x))
        calib, source = train_x[:count], "built-in default model"
        calib_from = f"MNIST training split, first {count}"
        eval_set = (test_x, test_y, "MNIST held-out split")
    else:
        from ..frontend.importer import load_network
        onnx = args.weights is not None and Path(args.weights).suffix.lower() == ".onnx"
        if args.weights is None or (args.arch is None and not onnx):
            raise UserError("give both --arch and --weights (or neither, for the built-in default model; "
                            "an .onnx --weights file needs no --arch)")
        if not args.calib:
            raise UserError("--calib DIR is required with --weights: a folder of calibration photos "
                            "(ImageFolder layout, DIR/<class>/<image>.jpg)")
        net = load_network(args.arch, args.weights)
        _check_output(args, net.name)              # before calibrating, not after
        files, _, _ = list_image_folder(args.calib)
        count = min(args.calib_count or DEFAULT_CALIB_PHOTOS, len(files))
        pick = np.unique(np.linspace(0, len(files) - 1, count).round().astype(int))
        calib, _, skipped = load_images([files[i] for i in pick], height=net.height, width=net.width,
                                        channels=net.in_ch, resize=net.resize, progress=progress)
        source = f"{args.arch} + {Path(args.weights).name}" if args.arch else Path(args.weights).name
        calib_from = f"{args.calib}, {len(pick)} images evenly spaced"
    out = _check_output(args, net.name)
    if args.eval_images:                          # an unreadable photo is found before calibrating
        s = load_image_folder(args.eval_images, height=net.height, width=net.width,
                              channels=net.in_ch, resize=net.resize, limit=args.eval_limit,
                              progress=progress)
        eval_set = (s.images, s.labels, str(args.eval_images))
    from ..frontend.importer import weight_warnings
    for w in weight_warnings(net):
        print(f"squeezehw quantize: warning: {w}", file=sys.stderr)
    spec = codebook_spec(args, net)
    model = quantize(net, calib, w_bits=args.bits, calibration=args.calibration,
                     percentile=args.percentile, progress=progress, source=source, codebook=spec,
                     bias_correction=args.bias_correction)
    model.info["calibration"]["from"] = calib_from
    if default:
        model.info["dataset"] = DEFAULT_DATASET_TAG
    rep = check_budget(model, budget, what)       # raises before anything is written

    if eval_set is not None:
        x, y, where = eval_set
        if args.eval_limit:
            x, y = x[:args.eval_limit], y[:args.eval_limit]
        acc = evaluate(model, x, y, progress=progress)
        model.info["accuracy"] = {"on": where, **acc}

    packed = None
    if spec is not None:
        from ..quant.compression import pack_weights_file
        packed = pack_weights_file(model)          # before anything is written: it checks every layer
    model.save(out)
    if args.weights_file:
        Path(args.weights_file).write_bytes(packed)
    if args.json:
        print(json.dumps({"output": str(out), "name": model.name, "w_bits": model.w_bits,
                          "calibration": model.info["calibration"],
                          "acc_bits": {c.name: c.acc_bits for c in model.convs()},
                          "memory": {k: v for k, v in rep.items() if k != "convs"},
                          "codebook_file_bytes": None if packed is None else len(packed),
                          "accuracy": model.info.get("accuracy")}, indent=2))
    else:
        print(summary_table(model, rep))
        if packed is not None:
            print(f"  lzma-coded weights file: {len(packed):,} B"
                  + (f" ({args.weights_file})" if args.weights_file else ""))
        a = model.info.get("accuracy")
        if a:
            f = a["float"]
            print(f"  accuracy on {a['on']} ({a['images']} images): float top-1 {f['top1']:.4f}, "
                  f"integer top-1 {a['quantized']['top1']:.4f}")
        print(f"wrote {out}", file=sys.stderr)
    return 0
