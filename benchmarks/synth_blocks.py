"""Synthesise and place-and-route int8 MAC arrays of several sizes; print resources and Fmax as JSON.

The array is an MVU-like block: PE x SIMD registered int8 multipliers, each PE with its weights in a
``Memory`` (synchronous read, so block RAM, then one register), and per PE the sum of its SIMD
registered products added into a 32-bit accumulator in one cycle.
Activations arrive one byte per cycle into a SIMD-lane shift register and results leave one byte per
cycle through a mux, so the ports stay narrow (the same design fits the 39 pins of an iCE40 UP5K) and
what is measured is the compute array.  Every figure printed comes from nextpnr's --report JSON (or
Yosys's stat for synthesis-only parts), via :func:`squeezehw.toolchain.synth.synthesize`.

    .venv/bin/python benchmarks/synth_blocks.py                       # 16, 64, 156 MACs on ecp5-85f
    .venv/bin/python benchmarks/synth_blocks.py --board up5k --macs 8 --target-mhz 24
"""
from __future__ import annotations

import argparse
import json
import math
import random
import sys
from pathlib import Path

from amaranth import Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from squeezehw.toolchain.synth import synthesize  # noqa: E402


class MacArray(wiring.Component):
    """``pe`` x ``simd`` int8 MACs; weights (``depth`` words per PE) in block RAM."""

    def __init__(self, *, pe: int, simd: int, depth: int = 512, seed: int = 0):
        for name, value in (("pe", pe), ("simd", simd), ("depth", depth)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, not {value!r}")
        self.pe, self.simd, self.depth, self.seed = pe, simd, depth, seed
        super().__init__({"x": In(signed(8)), "x_valid": In(1),
                          "sel": In(range(pe * 4)), "y": Out(8)})

    def elaborate(self, platform):
        m = Module()
        rng = random.Random(self.seed)
        lanes = [Signal(signed(8), name=f"lane{j}") for j in range(self.simd)]
        with m.If(self.x_valid):
            m.d.sync += [lanes[0].eq(self.x)] + [lanes[j].eq(lanes[j - 1]) for j in range(1, self.simd)]
        addr = Signal(range(self.depth))
        with m.If(self.x_valid):
            m.d.sync += addr.eq(addr + 1)

        accs = []
        for p in range(self.pe):
            mem = Memory(shape=8 * self.simd, depth=self.depth,
                         init=[rng.getrandbits(8 * self.simd) for _ in range(self.depth)])
            m.submodules[f"w{p}"] = mem
            rp = mem.read_port()  # synchronous read: block RAM
            m.d.comb += rp.addr.eq(addr)
            # Register the weights out of the block RAM: DP16KD clock-to-out (~5.8 ns) plus a
            # MULT18X18D (~3.9 ns) in one cycle would cap Fmax near 75 MHz (measured).
            w = Signal(8 * self.simd, name=f"w{p}_q")
            m.d.sync += w.eq(rp.data)
            prods = []
            for j in range(self.simd):
                prod = Signal(signed(16), name=f"p{p}_{j}")
                m.d.sync += prod.eq(lanes[j] * w[8 * j:8 * j + 8].as_signed())
                prods.append(prod)
            acc = Signal(signed(32), name=f"acc{p}")
            m.d.sync += acc.eq(acc + sum(prods))
            accs.append(acc)

        # One byte of one accumulator per cycle: sel picks PE (sel // 4) and byte (sel % 4).
        y = Signal(8)
        with m.Switch(self.sel):
            for p, acc in enumerate(accs):
                for byte in range(4):
                    with m.Case(p * 4 + byte):
                        m.d.sync += y.eq(acc[8 * byte:8 * byte + 8])
        m.d.comb += self.y.eq(y)
        return m


def fold(macs: int) -> tuple[int, int]:
    """(pe, simd) with pe * simd == macs and the two as close as possible (pe <= simd)."""
    pe = max(d for d in range(1, math.isqrt(macs) + 1) if macs % d == 0)
    return pe, macs // pe


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--board", default="ecp5-85f", help="target (default ecp5-85f)")
    ap.add_argument("--macs", type=int, nargs="+", default=[16, 64, 156], help="array sizes")
    ap.add_argument("--depth", type=int, default=512, help="weight words per PE (default 512)")
    ap.add_argument("--target-mhz", type=float, default=100.0, help="nextpnr --freq (default 100)")
    ap.add_argument("--seed", type=int, default=1, help="placer seed (default 1)")
    ap.add_argument("-o", "--output", default="build/synth_blocks", help="output folder")
    args = ap.parse_args(argv)

    rows = []
    for n in args.macs:
        pe, simd = fold(n)
        print(f"== {n} MACs (PE={pe}, SIMD={simd}) on {args.board}", file=sys.stderr, flush=True)
        r = synthesize(MacArray(pe=pe, simd=simd, depth=args.depth), board=args.board, top=f"macs{n}",
                       out_dir=Path(args.output) / f"{args.board}-{n}", target_mhz=args.target_mhz,
                       seed=args.seed)
        rows.append({"macs": n, "pe": pe, "simd": simd, "depth": args.depth, "board": r.board,
                     "device": r.device, "io_mode": r.io_mode, "lut": r.lut, "ff": r.ff, "dsp": r.dsp,
                     "bram": r.bram, "fmax_mhz": r.fmax_mhz, "target_mhz": r.target_mhz,
                     "timing_met": r.timing_met, "seed": r.seed, "seconds": r.seconds, "tools": r.tools})
    result = {"benchmark": "synth_blocks", "rows": rows}
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.board}.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
