"""Resource cost model: block RAM in the target's real blocks, multipliers, and LUT/FF estimates.

Memories are taken from the elaborated design itself (every ``amaranth.lib.memory.Memory`` with its
width and depth), so nothing is double-booked or forgotten; each is then counted in the target's
native blocks, trying every width/depth mode of the block and keeping the cheapest:

- ECP5 DP16KD (18 Kbit): 16384x1, 8192x2, 4096x4, 2048x9, 1024x18, 512x36
- iCE40 SB_RAM40_4K (4 Kbit): 2048x2, 1024x4, 512x8, 256x16 (SPRAM: 16384x16 blocks, counted apart)
- Xilinx RAMB18E2 (18 Kbit): as ECP5; RAMB36E2 (36 Kbit): 32768x1 ... 1024x36, 512x72

Small memories (at most ``LUTRAM_MAX_BITS`` bits and ``LUTRAM_MAX_DEPTH`` deep) are assumed to go to
distributed (LUT) RAM, as Yosys's memory mapper does for shallow memories.  LUT and FF figures are a
first-order model (per multiplier-accumulator lane, per accumulator bit, per stream register) whose
error against Yosys is measured by benchmarks/resources_vs_yosys.py.
"""
from __future__ import annotations

from dataclasses import dataclass

from .folding import Folding
from .intmodel import IntModel

BLOCKS = {
    "ecp5": ("DP16KD", 18 * 1024, [(1, 16384), (2, 8192), (4, 4096), (9, 2048), (18, 1024), (36, 512)]),
    "ice40": ("SB_RAM40_4K", 4 * 1024, [(2, 2048), (4, 1024), (8, 512), (16, 256)]),
    "xilinx18": ("RAMB18E2", 18 * 1024, [(1, 16384), (2, 8192), (4, 4096), (9, 2048), (18, 1024), (36, 512)]),
    "xilinx36": ("RAMB36E2", 36 * 1024,
                 [(1, 32768), (2, 16384), (4, 8192), (9, 4096), (18, 2048), (36, 1024), (72, 512)]),
}
LUTRAM_MAX_BITS = 1024
LUTRAM_MAX_DEPTH = 64


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

    @property
    def bits(self) -> int:
        return self.width * self.depth

    @property
    def distributed(self) -> bool:
        return self.bits <= LUTRAM_MAX_BITS and self.depth <= LUTRAM_MAX_DEPTH


def memory_inventory(design) -> list[MemoryUse]:
    """Every memory of an elaborated design, with its hierarchical path."""
    from amaranth.hdl import Fragment
    frag = Fragment.get(design, None)
    out = []

    def walk(f, path):
        for sub, name, _ in f.subfragments:
            walk(sub, path + (str(name),))
        data = getattr(f, "_data", None)        # MemoryInstance fragments carry their MemoryData
        if data is not None and hasattr(data, "depth"):
            from amaranth.hdl import Shape
            width = Shape.cast(data.shape).width
            out.append(MemoryUse(".".join(path), int(width), int(data.depth)))
    walk(frag, ())
    return out


def family_of(board) -> str:
    """The block-RAM family (a key of BLOCKS) of a squeezehw.boards.Board."""
    return {"ecp5": "ecp5", "ice40": "ice40"}.get(board.family, "xilinx18")


def estimate(model: IntModel, folding: Folding, family: str = "ecp5", design=None,
             memories: list[MemoryUse] | None = None) -> dict:
    """Predicted resources of the whole accelerator on ``family`` (ecp5, ice40, xilinx36, xilinx18).

    ``memories``: a memory_inventory() already taken (elaborating a large design takes a while)."""
    from .hw.accelerator import Accelerator
    if family not in BLOCKS:
        raise ValueError(f"unknown family {family!r}; choose one of {sorted(BLOCKS)}")
    if memories is None:
        memories = memory_inventory(design or Accelerator(model=model, folding=folding))
    mems = memories
    blocks = sum(blocks_for(m.width, m.depth, family) for m in mems if not m.distributed)
    dist_bits = sum(m.bits for m in mems if m.distributed)
    rows = folding.table(model)
    mac = sum(r["multipliers"] for r in rows)
    # requantisation: one multiplier per PE lane; acc x 16-bit needs ceil(acc/18) 18x18 DSPs
    acc_bits = {c.name: c.acc_bits for c in model.convs()}
    requant = sum(folding[r["layer"]].pe * (_ceil(acc_bits[r["layer"]], 18) if family == "ecp5" else 1)
                  for r in rows if r["kind"] == "conv")
    lut = ff = 0
    for r in rows:
        if r["kind"] != "conv":
            lut += 60 * folding[r["layer"]].simd + 120
            ff += 40 * folding[r["layer"]].simd + 80
            continue
        f = folding[r["layer"]]
        a = acc_bits[r["layer"]]
        # adder tree (simd products per PE) + accumulator + requant/clamp + control
        lut += f.pe * (f.simd * (a // 2 + 8) + 3 * a) + 150
        ff += f.pe * (f.simd * 8 + 4 * a + 24) + 8 * f.simd * 3 + 120
    # bypass adds: two 8x16-bit multipliers per output lane
    from .folding import fire_out_lanes
    from .intmodel import QFire
    add = sum(2 * fire_out_lanes(l, folding.layers)
              for l in model.layers if isinstance(l, QFire) and l.bypass is not None)
    requant += add
    lut += dist_bits // 4                      # LUT RAM: 16x4 bits per 4-LUT slice pair, roughly
    return {"family": family, "block_ram": blocks, "block_ram_cell": BLOCKS[family][0],
            "block_ram_bits": sum(m.bits for m in mems if not m.distributed),
            "distributed_ram_bits": dist_bits, "mac_multipliers": mac, "requant_multipliers": requant,
            "dsp": mac + requant, "lut": int(lut), "ff": int(ff),
            "memories": [{"path": m.path, "width": m.width, "depth": m.depth,
                          "blocks": 0 if m.distributed else blocks_for(m.width, m.depth, family)}
                         for m in mems]}
