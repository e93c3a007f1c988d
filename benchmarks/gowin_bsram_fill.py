"""How full of block RAM can a GW5AST-138C design be and still place?  A diagnostic for the
moonshot (benchmarks/gowin_moonshot.py), whose 334 / 340 BSRAM design nextpnr-himbaechel failed to
legalise.  Here the block RAM is the only thing the design has: ``--blocks`` ROMs of 512 x 36 with
random contents (one BSRAM each) share one address register, and their outputs are XORed into one
pin, so any placement failure is the block RAM's.  Not CI.

    nice -n 10 .venv/bin/python benchmarks/gowin_bsram_fill.py --blocks 334

Writes docs/results/gowin_bsram_fill_<blocks>.json (``--out``).
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from amaranth import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

REPO = Path(__file__).resolve().parents[1]
BOARD = "tang-mega-138k-pro"


class RomFill(wiring.Component):
    """``blocks`` 512 x 36 ROMs behind one registered address; the XOR of all their bits out."""
    addr: In(9)
    o: Out(1)

    def __init__(self, blocks: int, seed: int = 1):
        self.blocks, self.seed = blocks, seed
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        rng = np.random.default_rng(self.seed)
        a = Signal(9)
        m.d.sync += a.eq(self.addr)
        words = []
        for k in range(self.blocks):
            rom = m.submodules[f"rom{k}"] = Memory(shape=36, depth=512,
                                                   init=[int(v) for v in rng.integers(0, 2**36, 512)])
            rp = rom.read_port()
            m.d.comb += rp.addr.eq(a)
            words.append(rp.data)
        while len(words) > 1:           # a balanced XOR tree (a chain recurses too deep in Amaranth)
            words = [a ^ b for a, b in zip(words[::2], words[1::2])] + words[len(words) & ~1:]
        out = Signal(36)
        m.d.sync += out.eq(words[0])
        m.d.comb += self.o.eq(out.xor())
        return m


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--blocks", type=int, default=334, help="512 x 36 ROMs, one BSRAM each")
    ap.add_argument("--seed", type=int, default=1, help="nextpnr placer seed")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    from squeezehw.errors import UserError
    from squeezehw.toolchain.synth import synthesize
    out_dir = REPO / "build" / "gowin_bsram_fill" / str(args.blocks)
    t0 = time.monotonic()
    try:
        rep = synthesize(RomFill(args.blocks), board=BOARD, out_dir=out_dir, top="fill", seed=args.seed)
        res = {"placed": True, "bsram": rep.bram, "lut": rep.lut, "ff": rep.ff, "fmax_mhz": rep.fmax_mhz}
    except UserError as e:
        res = {"placed": False, "error": str(e)}
    res = {"benchmark": "gowin_bsram_fill", "board": BOARD, "blocks": args.blocks, "seed": args.seed,
           **res, "seconds": round(time.monotonic() - t0, 1)}
    path = args.out or REPO / "docs" / "results" / f"gowin_bsram_fill_{args.blocks}.json"
    path.write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
