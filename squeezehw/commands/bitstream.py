"""``squeezehw bitstream``: a build folder -> flashable bitstream of the UART board top."""
import json
import sys

NAME = "bitstream"
HELP = "build the UART board-top bitstream of a `squeezehw build --board` folder (for run-board)"
ORDER = 55
DESCRIPTION = """\
Builds a flashable bitstream for a real board (ulx3s-85f, icebreaker) from a folder written by
`squeezehw build ... --board NAME`: the accelerator of that folder (rebuilt from its config.json,
the same design as its Verilog) behind the board's UART top (boards/top.py: PLL to the build's
--clock, UART, status LEDs), through Yosys + nextpnr + ecppack/icepack with the board's
amaranth-boards platform.  `squeezehw run-board` then talks to the flashed board.  (`squeezehw
synth --bitstream` is different: the bare core with its ports on pins, for out-of-context figures;
it cannot talk to run-board.)

examples:
  squeezehw build default --board ulx3s-85f --clock 85 -o build/ulx3s
  squeezehw bitstream build/ulx3s                 # -> build/ulx3s/board-ulx3s-85f/top.bit
  squeezehw build tiny.npz --board icebreaker --requant serial --fold auto --max-multipliers 5 --clock 18 -o build/ice
  squeezehw bitstream build/ice                   # -> build/ice/board-icebreaker/top.bin
  squeezehw run-board --port /dev/ttyUSB0 default image.png"""


def add_arguments(p):
    p.add_argument("build", metavar="BUILD", help="a folder written by `squeezehw build --board NAME`")
    p.add_argument("-o", "--output", metavar="DIR", help="output folder (default BUILD/board-<board>)")
    p.add_argument("--baud", type=int, default=115200, help="UART baud rate (default 115200)")
    p.add_argument("--seed", type=int, default=1, help="nextpnr placement seed (default 1)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress messages")


def run(args):
    from ..toolchain.build import board_bitstream
    report, _, _ = board_bitstream(args.build, out_dir=args.output, baud=args.baud, seed=args.seed,
                                progress=not args.no_progress)
    print(json.dumps(report.to_json(), indent=1) if args.json else report.summary())
    print(f"wrote {report.bitstream}", file=sys.stderr)
    return 0
