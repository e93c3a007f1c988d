"""``squeezehw run-board``: classify one image on a board over its UART, check it against the golden model."""
import json

NAME = "run-board"
HELP = "send an image to a board running the accelerator (UART) and check its answer"
ORDER = 75
DESCRIPTION = """\
Sends IMAGE to a board that runs the bitstream of boards/top.py (ULX3STop, ICEBreakerTop) for
MODEL, over its UART (protocol: boards/README.md), reads every logit and the class back, and
compares them with the NumPy golden model.  Prints the class, the logits and whether they equal the
golden model's (exit status 1 if they differ, 2 on a communication error or timeout).

IMAGE is a PNG/JPEG file, preprocessed as the model's evaluation does (grey or RGB, resize, centre
crop); or give --digit N for the default model's N-th held-out MNIST digit.  --port emulate answers
with an emulated board (the golden model), to try the command without hardware.

examples:
  squeezehw run-board --port /dev/ttyUSB0 default --digit 3
  squeezehw run-board --port /dev/ttyUSB1 --baud 115200 model.npz photo.jpg --json"""


def add_arguments(p):
    p.add_argument("model", metavar="MODEL", help="integer-model file, or `default`")
    p.add_argument("image", metavar="IMAGE", nargs="?", help="image file (png/jpg)")
    p.add_argument("--digit", type=int, metavar="N", help="the default model's N-th held-out digit")
    p.add_argument("--port", required=True, help="serial port (e.g. /dev/ttyUSB0), or `emulate`")
    p.add_argument("--baud", type=int, default=115200, help="baud rate the bitstream was built for (default 115200)")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait beyond the transfer time (default 5)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def load_image(model, image, digit):
    """uint8 (C, H, W) and a description."""
    import numpy as np

    from ..errors import UserError
    if (image is None) == (digit is None):
        raise UserError("give an IMAGE file or --digit N (not both)")
    if digit is not None:
        from ..quant.default_model import TEST_PER_CLASS, mnist_split
        if (model.in_ch, model.height, model.width) != (1, 28, 28):
            raise UserError(f"--digit needs a 1x28x28 MNIST model; {model.name} takes "
                            f"{model.in_ch}x{model.height}x{model.width} images")
        if not 0 <= digit < 10 * TEST_PER_CLASS:
            raise UserError(f"--digit must be in 0..{10 * TEST_PER_CLASS - 1}, not {digit}")
        _, _, tx, ty = mnist_split()
        return tx[digit], f"held-out digit {digit} (label {int(ty[digit])})"
    from ..frontend.images import open_image
    try:
        x = open_image(image, height=model.height, width=model.width, channels=model.in_ch, resize=model.resize)
    except (OSError, ValueError) as e:
        why = e.strerror if isinstance(e, OSError) and e.strerror else e
        raise UserError(f"cannot use image {image}: {why}") from None
    return np.ascontiguousarray(x, dtype=np.uint8), str(image)


def run(args):
    from ..host import BoardClient, BoardError, EmulatedBoard, open_serial
    from ..pipeline import resolve_model
    from ..quant import golden
    model = resolve_model(args.model)
    x, where = load_image(model, args.image, args.digit)
    port = EmulatedBoard(model) if args.port == "emulate" else open_serial(args.port, baud=args.baud)
    try:
        reply = BoardClient(port, classes=model.classes, baud=args.baud, timeout=args.timeout).classify(x)
    except BoardError as e:
        raise type(e)(f"{args.port}: {e}") from None
    finally:
        if hasattr(port, "close"):
            port.close()
    ref = golden.run(model, x[None])
    ref_logits = [int(v) for v in ref.logits[0]]
    match = reply.logits == ref_logits and reply.cls == int(ref.classes[0])
    if args.json:
        print(json.dumps({"image": where, "port": args.port, **reply.as_dict(), "golden_class": int(ref.classes[0]),
                          "golden_logits": ref_logits, "bit_exact": match}))
    else:
        print(f"image     {where}")
        print(f"class     {reply.cls}")
        print(f"logits    {' '.join(str(v) for v in reply.logits)}")
        print(f"golden    {'equal (bit-exact)' if match else 'DIFFERENT: class ' + str(int(ref.classes[0])) + ', logits ' + ' '.join(map(str, ref_logits))}")
        print(f"time      {reply.seconds * 1e3:.1f} ms round trip")
    return 0 if match else 1
