"""``squeezehw sim``: cycle-accurate Verilator simulation, checked against the golden model."""
import json
import sys

NAME = "sim"
HELP = "simulate the accelerator in Verilator on images, bit-exact against the golden model"
ORDER = 50
DESCRIPTION = """\
Builds (cached) the accelerator for MODEL with the given folding, runs it in Verilator through
cocotb on images fed back to back, and compares every logit and class with the NumPy golden model.
Prints frames, bit_exact, cycles_per_frame (steady state), latency_cycles, multipliers and
mac_efficiency = MACs per frame / (multipliers x cycles per frame).  Exit status 1 when the
hardware and the golden model disagree (the first differences are listed).

examples:
  squeezehw sim default --json                      # 20 held-out MNIST digits
  squeezehw sim sq11.npz --images photos/ --limit 2 --fold auto --max-multipliers 2000 --json
  squeezehw sim default --random 8 --traffic rough  # random gaps and back-pressure"""


def add_arguments(p):
    from ..pipeline import add_fold_arguments, add_weights_argument
    p.add_argument("model", metavar="MODEL", help="integer-model file, or `default`")
    src = p.add_argument_group("images")
    src.add_argument("--images", metavar="DIR", help="ImageFolder-layout photos")
    src.add_argument("--random", type=int, metavar="N", help="N random images instead")
    src.add_argument("--limit", type=int, metavar="N", help="at most N images (default model: 20)")
    add_fold_arguments(p)
    add_weights_argument(p)
    p.add_argument("--traffic", choices=("smooth", "rough"), default="smooth",
                   help="smooth: input always valid, output always ready (timing figures); rough: "
                        "random input gaps and output stalls (results must not change)")
    p.add_argument("--seed", type=int, default=1, help="traffic seed")
    p.add_argument("--waves", metavar="FILE", help="also dump a VCD waveform to FILE (a separate, traced build)")
    p.add_argument("--profile", action="store_true",
                   help="build with per-stream counters and report transfers and blocked cycles of every "
                        "stage's output stream (the bottleneck's input is blocked, its output is not)")
    p.add_argument("--diagnose", action="store_true",
                   help="on a mismatch, bisect over the layers to name the first differing layer, "
                        "pixel and channel (a few more Verilator builds)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args):
    from ..errors import UserError
    from ..pipeline import folding_from_args, resolve_model, sim_images
    from ..sim.simulate import simulate_frames
    from ..toolchain.verilator import SimTraffic
    for opt, v in (("--random", args.random), ("--limit", args.limit)):
        if v is not None and v < 1:
            raise UserError(f"{opt} must be a positive number of images, got {v}")
    model = resolve_model(args.model)
    fold = folding_from_args(args, model)
    x, labels, where = sim_images(model, images_dir=args.images, random_n=args.random, limit=args.limit)
    traffic = SimTraffic.rough(args.seed) if args.traffic == "rough" else SimTraffic(seed=args.seed)
    from ..quant.sparse_weights import model_weight_codes
    codes = model_weight_codes(model, fold, args.weights or "auto")
    rep = simulate_frames(model, fold, x, traffic=traffic, waves=args.waves, diagnose=args.diagnose,
                          probes=args.profile, weight_codes=codes or None)
    d = rep.as_dict()
    d["images"] = where
    d["clock_mhz"] = args.clock
    d["fps"] = args.clock * 1e6 / rep.cycles_per_frame if rep.cycles_per_frame else None
    if labels is not None:
        d["accuracy"] = float((labels == rep.classes).mean()) if rep.classes else None
        d["golden_accuracy"] = float((labels == rep.golden_classes).mean())
    if args.json:
        print(json.dumps(d, indent=1))
    else:
        eff = f"{rep.mac_efficiency:.3f}" if rep.mac_efficiency else "n/a"
        print(f"{rep.frames} frames ({where}): bit_exact={rep.bit_exact}, cycles/frame "
              f"{rep.cycles_per_frame} (model {rep.expected_cycles_per_frame}), latency {rep.latency_cycles}, "
              f"{rep.multipliers} multipliers, MAC efficiency {eff}, "
              f"{rep.sim_cycles_per_second:,.0f} simulated cycles/s")
        for name, st in rep.streams.items():
            print(f"  {name:<24} transfers {st['transfers']:>9}  blocked {st['blocked']:>9}")
        for msg in rep.mismatches[:10]:
            print("  MISMATCH " + msg, file=sys.stderr)
    return 0 if rep.bit_exact else 1
