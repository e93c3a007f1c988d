"""``squeezehw eval``: float vs integer top-1/top-5 of an integer model file."""
from __future__ import annotations

import json

from ..errors import UserError

NAME = "eval"
HELP = "measure float and integer (golden model) accuracy of an integer model"
ORDER = 25
DESCRIPTION = """\
Runs the golden model (integer arithmetic, bit-exact with the hardware) and the float network the
model was quantised from on labelled images and reports top-1/top-5 accuracy of both.

Images come from --images DIR (ImageFolder layout: DIR/<class>/<image>, classes in sorted order);
for the built-in default model, without --images, the MNIST held-out split is used.

examples:
  squeezehw eval default
  squeezehw eval default.npz
  squeezehw eval sq11.npz --images photos/ --limit 100 --json"""


def add_arguments(p):
    p.add_argument("model", metavar="MODEL", help="integer model file (from `squeezehw quantize`), or `default`")
    p.add_argument("--images", metavar="DIR", help="labelled photos in ImageFolder layout")
    p.add_argument("--limit", type=int, metavar="N", help="use the first N images (sorted order)")
    p.add_argument("--batch-size", type=int, default=32, metavar="N", help="images per batch (default 32)")
    p.add_argument("--skip-unreadable", action="store_true",
                   help="skip images that cannot be read (counted in the output) instead of failing")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args) -> int:
    from ..frontend.images import load_image_folder
    from ..pipeline import resolve_model
    from ..quant.evaluate import evaluate
    from .quantize import DEFAULT_DATASET_TAG
    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit must be a positive number of images, got {args.limit}")
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be positive, got {args.batch_size}")
    progress = not args.no_progress
    model = resolve_model(args.model, progress)
    skipped = 0
    if args.images:
        s = load_image_folder(args.images, height=model.height, width=model.width, channels=model.in_ch,
                              resize=model.resize, limit=args.limit, skip_unreadable=args.skip_unreadable,
                              progress=progress, skip_option="--skip-unreadable")
        x, y, where, skipped = s.images, s.labels, str(args.images), len(s.skipped)
    elif model.info.get("dataset") == DEFAULT_DATASET_TAG:
        from ..quant.default_model import mnist_split
        _, _, x, y = mnist_split()
        x, y, where = x[:args.limit], y[:args.limit], "MNIST held-out split"
    else:
        raise UserError(f"{args.model}: give --images DIR (labelled photos in ImageFolder layout); "
                        "only the built-in default model has a built-in evaluation set")
    r = evaluate(model, x, y, batch_size=args.batch_size, with_float=bool(model.float_weights),
                 progress=progress)
    compressed = None
    if any(c.codebook is not None for c in model.convs()):       # shared weights: report their size
        from ..plan.memory import compressed_weight_report
        from ..quant.compression import pack_weights_file
        compressed = compressed_weight_report(model)
        compressed["file_bytes"] = len(pack_weights_file(model))
    if args.json:
        out = {"images": r["images"], "float": r["float"], "quantized": r["quantized"],
               "agreement": r["agreement"]}
        if compressed is not None:
            out["compressed"] = {k: v for k, v in compressed.items() if k != "convs"}
        if skipped:
            out["skipped_unreadable"] = skipped
        print(json.dumps(out))
        return 0
    print(f"{model.name} ({model.w_bits}-bit weights) on {where}: {r['images']} images"
          + (f", {skipped} unreadable skipped" if skipped else ""))
    print(f"  {'':<10}{'top-1':>8}{'top-5':>8}")
    for k in ("float", "quantized"):
        if r[k] is not None:
            print(f"  {k:<10}{r[k]['top1']:>8.4f}{r[k]['top5']:>8.4f}")
    if r["agreement"] is not None:
        print(f"  top-1 agreement float vs integer: {r['agreement']:.4f}")
    if compressed is not None:
        from .quantize import compressed_lines
        print(compressed_lines(compressed, compressed["file_bytes"]))
    return 0
