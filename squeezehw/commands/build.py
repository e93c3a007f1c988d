"""``squeezehw build``: integer model + folding -> Verilog folder."""
import json
import sys
from pathlib import Path

NAME = "build"
HELP = "generate the accelerator's Verilog, memory images and design report"
ORDER = 40
DESCRIPTION = """\
Builds the streaming accelerator for MODEL (an integer-model file or `default`) with the given
folding and writes, into the output folder: NAME.v (deterministic Verilog, weights inline),
mem/*.hex (weight memory images), design.json (per layer PE, SIMD, expected cycles, multipliers,
weight memory bits, FIFO depths; totals), folding.json and summary.txt.  The same inputs always give
the same bytes.  An invalid folding (a factor that does not divide a channel count) is an error and
nothing is written.

examples:
  squeezehw build default -o rtl_out/default
  squeezehw build default --dsp ecp5 -o build/default-ecp5   # then: squeezehw synth build/default-ecp5 --board ulx3s-85f
  squeezehw build sq11.npz --fold auto --max-multipliers 2000 -o rtl_out/sq11"""


def add_arguments(p):
    from ..pipeline import add_fold_arguments
    p.add_argument("model", metavar="MODEL", help="integer-model file, or `default`")
    add_fold_arguments(p)
    p.add_argument("-o", "--output", metavar="DIR", help="output folder (default rtl_out/<model name>)")
    p.add_argument("--dsp", choices=("generic", "ecp5", "gw5a", "gw2a"), default="generic",
                   help="multiplier form: `generic` (`*` between registers, any tool and simulator; the "
                        "default) or `ecp5` (MULT18X18D instances using the DSP's own input/output "
                        "registers, for an ECP5 build such as `squeezehw synth DIR --board ulx3s-85f`: "
                        "without them Yosys leaves the registers in the fabric and the multiplies limit Fmax); "
                        "`gw5a` (Gowin MULT12X12, e.g. --board tang-mega-138k-pro: Yosys maps no GW5A "
                        "multiply to a DSP by itself) or `gw2a` (MULT9X9/MULT18X18, tang-primer-20k)")
    p.add_argument("--json", action="store_true", help="print design.json instead of the table")


def run(args):
    from ..build import summary_text, write_design
    from ..pipeline import folding_from_args, resolve_model
    model = resolve_model(args.model)
    fold = folding_from_args(args, model)
    out = Path(args.output or Path("rtl_out") / model.name)
    summary = write_design(model, fold, out, dsp=args.dsp)
    print(json.dumps(summary, indent=1) if args.json else summary_text(summary))
    print(f"wrote {out}/", file=sys.stderr)
    return 0
