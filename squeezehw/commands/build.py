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
mem/*.hex (weight memory images), design.json (the build plan: per layer PE, SIMD, expected cycles,
multipliers, weight memory bits, FIFO depths; totals; resource estimate), config.json (the build
config with the folding inline), folding.json and summary.txt.  The same inputs always give the same
bytes; `squeezehw build --config DIR/config.json` rebuilds a folder's design.  An invalid folding (a
factor that does not divide a channel count) is an error and nothing is written.

examples:
  squeezehw build default -o rtl_out/default
  squeezehw build default --dsp ecp5 -o build/default-ecp5   # then: squeezehw synth build/default-ecp5 --board ulx3s-85f
  squeezehw build default --board ulx3s-85f -o build/ulx3s   # auto-fold for its 156 DSPs, ECP5 multipliers
  squeezehw build sq11.npz --fold auto --max-multipliers 2000 -o rtl_out/sq11
  squeezehw build --config rtl_out/sq11/config.json -o rtl_out/sq11-again
  squeezehw build dc8.npz --fold auto --max-multipliers 500 -o rtl_out/dc8   # codebook weights stay compressed"""


def add_arguments(p):
    from ..pipeline import add_fold_arguments, add_target_arguments, add_weights_argument
    p.add_argument("model", metavar="MODEL", nargs="?", help="integer-model file, or `default` (the default)")
    p.add_argument("--config", metavar="FILE",
                   help="a build config (config.json of a build folder, or design.json): model, folding, "
                        "board, multiplier primitive, requantiser and clock all come from it")
    add_fold_arguments(p)
    add_target_arguments(p)
    add_weights_argument(p)
    p.add_argument("-o", "--output", metavar="DIR",
                   help="output folder (default rtl_out/<model name>); an existing folder is replaced only "
                        "when it is a previous squeezehw output, never a folder with other files")
    p.add_argument("--json", action="store_true", help="print design.json instead of the table")


def run(args):
    from ..errors import UserError
    from ..outputs import check_output_dir
    from ..pipeline import CONFIG_FLAGS, config_from_args, folding_for_config, resolve_model
    from ..toolchain.build import summary_text, write_design
    if args.output:
        check_output_dir(args.output)
    if args.config:
        from ..plan.config import BuildConfig
        given = [flag for key, flag in CONFIG_FLAGS.items() if getattr(args, key, None) is not None]
        if args.model or given:
            raise UserError(f"--config {args.config} says the model and every build setting; drop "
                            f"{', '.join((['MODEL'] if args.model else []) + given)} (or drop --config)")
        config = BuildConfig.load(args.config)
        config.check_model_file()
    else:
        config = config_from_args(args, args.model)
    model = resolve_model(config.model)
    fold = folding_for_config(config, model)
    out = Path(args.output or Path("rtl_out") / model.name)
    summary = write_design(model, fold, out, config=config)
    print(json.dumps(summary, indent=1) if args.json else summary_text(summary))
    print(f"wrote {out}/", file=sys.stderr)
    return 0
