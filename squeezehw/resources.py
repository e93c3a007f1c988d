"""Resource cost model: block RAM in the target's real blocks, multipliers, and LUT/FF estimates.

Memories are taken from the elaborated design itself (every ``amaranth.lib.memory.Memory`` with its
width and depth), so nothing is double-booked or forgotten; each is then counted in the target's
native blocks, trying every width/depth mode of the block and keeping the cheapest:

- ECP5 DP16KD (18 Kbit): 16384x1, 8192x2, 4096x4, 2048x9, 1024x18, 512x36
- iCE40 SB_RAM40_4K (4 Kbit): 2048x2, 1024x4, 512x8, 256x16 (SPRAM: 16384x16 blocks, counted apart)
- Xilinx RAMB18E2 (18 Kbit): as ECP5; RAMB36E2 (36 Kbit): 32768x1 ... 1024x36, 512x72
- Gowin BSRAM (18 Kbit, GW2A and GW5A): 16384x1, 8192x2, 4096x4, 2048x9, 1024x18, 512x36 (the x8/x16/x32
  modes have the same depths, so a byte-wide memory leaves the ninth bit unused)

Small memories (RAMs at most ``LUTRAM_MAX_BITS`` bits and ``LUTRAM_MAX_DEPTH`` deep, ROMs at most
``ROM_LOGIC_MAX_DEPTH`` deep) are assumed to go to LUTs, as Yosys's memory mapper put them for the
default model.  LUT and FF figures are a
first-order model per block of the elaborated design (:func:`block_logic`, fitted to Yosys's
per-module counts), whose whole-design error against Yosys and nextpnr is measured by
benchmarks/resources_vs_yosys.py.
"""
from __future__ import annotations

from dataclasses import dataclass

from .folding import Folding
from .intmodel import IntModel

BLOCKS = {
    "ecp5": ("DP16KD", 18 * 1024, [(1, 16384), (2, 8192), (4, 4096), (9, 2048), (18, 1024), (36, 512)]),
    "ice40": ("SB_RAM40_4K", 4 * 1024, [(2, 2048), (4, 1024), (8, 512), (16, 256)]),
    "gowin": ("BSRAM", 18 * 1024, [(1, 16384), (2, 8192), (4, 4096), (9, 2048), (18, 1024), (36, 512)]),
    "xilinx18": ("RAMB18E2", 18 * 1024, [(1, 16384), (2, 8192), (4, 4096), (9, 2048), (18, 1024), (36, 512)]),
    "xilinx36": ("RAMB36E2", 36 * 1024,
                 [(1, 32768), (2, 16384), (4, 8192), (9, 4096), (18, 2048), (36, 1024), (72, 512)]),
}
# Where Yosys's memory mapper (synth_ecp5) put the default model's memories: RAMs up to 168 deep
# and 3,072 bits went to LUT RAM, deeper or larger ones to block RAM; initialised memories (weight
# ROMs) to block RAM unless at most 32 deep (the parameter ROMs become logic).
LUTRAM_MAX_BITS = 3072
LUTRAM_MAX_DEPTH = 168
ROM_LOGIC_MAX_DEPTH = 32


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def blocks_for(width: int, depth: int, family: str) -> int:
    """Fewest native blocks that hold a width x depth memory (cheapest mode, tiled)."""
    _, _, modes = BLOCKS[family]
    return min(_ceil(width, w) * _ceil(depth, d) for w, d in modes)


@dataclass(frozen=True)
class MemoryUse:
    path: str
    width: int
    depth: int
    rom: bool = False       # has initial contents (weights, parameters)

    @property
    def bits(self) -> int:
        return self.width * self.depth

    @property
    def distributed(self) -> bool:
        """In LUTs (LUT RAM, or logic for a small ROM) rather than block RAM."""
        if self.rom:
            return self.depth <= ROM_LOGIC_MAX_DEPTH
        return self.bits <= LUTRAM_MAX_BITS and self.depth <= LUTRAM_MAX_DEPTH


def design_inventory(design) -> tuple[list[MemoryUse], list[object]]:
    """(every memory, every squeezehw block object) of an elaborated design, in one walk."""
    from amaranth.hdl import Fragment, Shape
    frag = Fragment.get(design, None)
    mems, blocks, seen = [], [], set()

    def walk(f, path):
        for sub, name, _ in f.subfragments:
            walk(sub, path + (str(name),))
        data = getattr(f, "_data", None)        # MemoryInstance fragments carry their MemoryData
        if data is not None and hasattr(data, "depth"):
            rom = any(int(v) for v in data.init)
            mems.append(MemoryUse(".".join(path), int(Shape.cast(data.shape).width), int(data.depth), rom))
        for obj in getattr(f, "origins", None) or ():
            if type(obj).__module__.startswith("squeezehw.hw.") and id(obj) not in seen:
                seen.add(id(obj))
                blocks.append(obj)
    walk(frag, ())
    return mems, blocks


def block_logic(block) -> tuple[float, float]:
    """(LUT4, FF) of one block, first-order, its LUT RAM included.

    Coefficients fitted to Yosys ``synth_ecp5 -abc9 -noflatten`` per-module cell counts of the
    default model (LUT4 + 2 per CCU2C + 4 per TRELLIS_DPR16X4; benchmarks/resources_vs_yosys.py
    measures the whole-design error).  MVU: a least-squares fit over its 12 units (LUT within
    +-25 %, FF within +-5 % each); the others are that design's per-instance figures."""
    from math import ceil, gcd, log2
    from .hw import bypass_add, concat, fifo, fork, global_pool, maxpool, mvu, resize, stream_register, window
    if isinstance(block, mvu.MVU):
        lanes = block.simd * block.pe
        return 415 + 60 * lanes + 3.4 * block.pe * block.acc_bits, 135 + 47 * lanes + 12.2 * block.pe * block.acc_bits
    if isinstance(block, resize.Resize):
        if block.identity:
            return 0, 0
        if block.widen:
            return 3 * block.out_lanes, 8 * block.cap_lanes + 10
        if block.narrow:
            return 40 * block.in_lanes // block.out_lanes, 8 * block.cap_lanes + 2
        g = gcd(block.in_lanes, block.out_lanes)
        return 6 * block.cap_lanes * ceil(log2(block.cap_lanes // g + 1)), 8 * block.cap_lanes + 5
    if isinstance(block, window.SlidingWindow):
        return 450 + 4 * block.lanes, 130 + 10 * block.lanes
    if isinstance(block, fifo.StreamFIFO):
        return (0, 0) if block.depth == 0 else (130 + block.width // 4, 50 + block.width)
    if isinstance(block, maxpool.MaxPool):
        return 180 + 25 * block.lanes, 150 + block.register_bits
    if isinstance(block, global_pool.GlobalSumArgmax):
        return 200 + 30 * block.lanes, 160 + 20 * block.lanes
    if isinstance(block, bypass_add.BypassAdd):
        return 100 * block.lanes, 74 * block.lanes
    if isinstance(block, concat.Concat):
        return 10 + 8 * block.lanes, 5
    if isinstance(block, fork.Fork):
        return 8, 2
    if isinstance(block, stream_register.StreamRegister):
        return 1, block.register_bits
    return 0, 0


def family_of(board) -> str:
    """The block-RAM family (a key of BLOCKS) of a squeezehw.boards.Board."""
    return {"ecp5": "ecp5", "ice40": "ice40", "gowin": "gowin"}.get(board.family, "xilinx18")


def estimate(model: IntModel, folding: Folding, family: str = "ecp5", design=None,
             memories: list[MemoryUse] | None = None, blocks_in: list | None = None) -> dict:
    """Predicted resources of the whole accelerator on ``family`` (ecp5, ice40, xilinx36, xilinx18).

    ``memories``/``blocks_in``: a design_inventory() already taken (elaborating a large design takes
    a while).  LUT/FF: the sum of :func:`block_logic` over every block of the design."""
    from .hw.accelerator import Accelerator
    if family not in BLOCKS:
        raise ValueError(f"unknown family {family!r}; choose one of {sorted(BLOCKS)}")
    if memories is None or blocks_in is None:
        memories, blocks_in = design_inventory(design or Accelerator(model=model, folding=folding))
    mems = memories
    blocks = sum(blocks_for(m.width, m.depth, family) for m in mems if not m.distributed)
    dist_bits = sum(m.bits for m in mems if m.distributed)
    rows = folding.table(model)
    mac = sum(r["multipliers"] for r in rows)
    # requantisation: one multiplier per PE lane; acc x 16-bit needs ceil(acc/18) 18x18 DSPs
    acc_bits = {c.name: c.acc_bits for c in model.convs()}
    requant = sum(folding[r["layer"]].pe * (_ceil(acc_bits[r["layer"]], 18) if family in ("ecp5", "gowin") else 1)
                  for r in rows if r["kind"] == "conv")
    # bypass adds: two 8x16-bit multipliers per output lane
    from .hw.bypass_add import BypassAdd
    requant += sum(2 * b.lanes for b in blocks_in if isinstance(b, BypassAdd))
    logic = [block_logic(b) for b in blocks_in]
    lut = sum(x for x, _ in logic)
    ff = sum(y for _, y in logic)
    return {"family": family, "block_ram": blocks, "block_ram_cell": BLOCKS[family][0],
            "block_ram_bits": sum(m.bits for m in mems if not m.distributed),
            "distributed_ram_bits": dist_bits, "mac_multipliers": mac, "requant_multipliers": requant,
            # Gowin, in MULT12X12 units (GW5A; MULT9X9 on GW2A): a MAC is one, a requantisation or
            # bypass multiply (operands wider than 12 bits) a MULTALU27X18 (GW2A: MULT18X18), two
            "dsp": mac + (2 * requant if family == "gowin" else requant), "lut": int(lut), "ff": int(ff),
            "memories": [{"path": m.path, "width": m.width, "depth": m.depth,
                          "blocks": 0 if m.distributed else blocks_for(m.width, m.depth, family)}
                         for m in mems]}
