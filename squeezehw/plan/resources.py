"""Resource cost model of a build plan (squeezehw/plan/lowering.py): multipliers and DSPs, block RAM in the
target's real blocks, and LUT/FF estimates.

Multipliers and DSPs come from the plan alone (no elaboration): every multiplier the design
instantiates -- MAC lanes, requantisation (one or two per PE lane, by accumulator width; none with
the serial requantiser) and bypass adds (two per lane) -- with its operand widths, counted in the
part's DSP cells (:func:`dsp_cells`).  The target's facts (block RAM modes, DSP operand widths) are
its entry in the board registry (boards/registry.py).

Memories are taken from the elaborated design itself (every ``amaranth.lib.memory.Memory`` with its
width and depth), so nothing is double-booked or forgotten; each is then counted in the target's
native blocks, trying every width/depth mode of the block (``Resources.bram_modes``) and keeping
the cheapest (e.g. ECP5 DP16KD: 16384x1 ... 512x36; iCE40 SB_RAM40_4K: 2048x2 ... 256x16).

Small memories (RAMs at most ``LUTRAM_MAX_BITS`` bits and ``LUTRAM_MAX_DEPTH`` deep, ROMs at most
``ROM_LOGIC_MAX_DEPTH`` deep) are assumed to go to LUTs, as Yosys's memory mapper put them for the
default model; on a part without LUT RAM (iCE40) every RAM takes a block.  LUT and FF figures are a
first-order model per block of the elaborated design (:func:`block_logic`, fitted to Yosys's
per-module counts), whose whole-design error against Yosys and nextpnr is measured by
benchmarks/resources_vs_yosys.py.
"""
from __future__ import annotations

from dataclasses import dataclass

# The XCZU9EG's block RAM counted as RAMB36E2 (the unit Vivado and Yosys report); the registry's
# entry counts RAMB18E2.  Any other cell comes from the registry (Resources.bram_modes).
_RAMB36E2 = ("RAMB36E2", 36 * 1024, ((1, 32768), (2, 16384), (4, 8192), (9, 4096), (18, 2048), (36, 1024), (72, 512)))
# the names estimate() took before the board registry: family -> registry entry
FAMILY_BOARDS = {"ecp5": "ecp5-85f", "ice40": "up5k", "xilinx18": "xczu9eg", "xilinx36": "xczu9eg"}
# Where Yosys's memory mapper (synth_ecp5) put the default model's memories: RAMs up to 168 deep
# and 3,072 bits went to LUT RAM, deeper or larger ones to block RAM; initialised memories (weight
# ROMs) to block RAM unless at most 32 deep (the parameter ROMs become logic).
LUTRAM_MAX_BITS = 3072
LUTRAM_MAX_DEPTH = 168
ROM_LOGIC_MAX_DEPTH = 32
# Without LUT RAM (iCE40), Yosys's synth_ice40 kept RAMs at most 4 deep in flip-flops and put every
# deeper one in an SB_RAM40_4K (the iCEBreaker tiny member: 12 blocks in the core, 13 estimated)
FF_RAM_MAX_DEPTH = 4


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def _resources(target):
    """The registry's Resources of ``target`` (a board name or Board, or one of FAMILY_BOARDS)."""
    from ..boards.registry import get_board
    return get_board(FAMILY_BOARDS.get(target, target)).resources


def bram_kind(target) -> tuple[str, int, tuple]:
    """(cell, bits, (width, depth) modes) of the block RAM that ``target`` is counted in."""
    if target == "xilinx36":
        return _RAMB36E2
    r = _resources(target)
    return r.bram_cell, r.bram_bits, r.bram_modes or ((1, r.bram_bits),)


def blocks_for(width: int, depth: int, target) -> int:
    """Fewest native blocks that hold a width x depth memory (cheapest mode, tiled)."""
    _, _, modes = bram_kind(target)
    return min(_ceil(width, w) * _ceil(depth, d) for w, d in modes)


def weight_bank_depth(width: int, depth: int, target) -> int | None:
    """Words per bank of a ``width`` x ``depth`` MVU weight memory on ``target`` (hw/mvu.py
    ``weight_bank_depth``), or None to keep one memory.

    A memory deeper than one block is tiled in depth, and a block RAM mapper puts a mux after
    the blocks (Yosys's ECP5 mapping: DP16KD clock-to-out -> depth-select LUTs -> register was the
    largest ULX3S member's critical path).  Banked, the unit stores ``banks`` depth slices of
    at most one block depth side by side (rows of ``banks * width`` bits) and selects the bank
    after a register.  For each of the block's (width, depth) modes the banked memory takes
    ``ceil(banks * width / mode width)`` blocks with ``banks = ceil(depth / mode depth)``, never
    more than the tiled deep memory (``blocks_for``) and often fewer (a 9/18/36-bit mode's
    parity bits hold data).  Banked where the cheapest mode needs more than one bank (ties go to
    fewer banks, so a memory that fits one block depth at no extra cost stays one memory);
    memories that stay in logic (``ROM_LOGIC_MAX_DEPTH``) are never banked."""
    if depth <= ROM_LOGIC_MAX_DEPTH:
        return None
    _, _, modes = bram_kind(target)
    blocks, banks, mode_depth = min((_ceil(_ceil(depth, d) * width, w), _ceil(depth, d), d) for w, d in modes)
    return None if banks == 1 else _ceil(depth, banks)


def dsp_cells(multipliers, target="ecp5-85f") -> int:
    """DSP cells that ``multipliers`` (squeezehw.plan.lowering.Multipliers) take on ``target``: one per
    multiplier whose operands fit the cell's ports (``Resources.dsp_operand_bits`` signed,
    ``dsp_unsigned_bits`` unsigned: ECP5 MULT18X18D takes signed 18 or unsigned 17 bits, exactly
    hw/multiplier.py's rule), else the tiles Yosys splits it into (first order)."""
    r = _resources(target)
    signed_max = r.dsp_operand_bits
    unsigned_max = r.dsp_unsigned_bits or tuple(b - 1 for b in signed_max)

    def tiles(bits, is_signed, port):
        return _ceil(bits, (signed_max if is_signed else unsigned_max)[port])

    def fits(bits, is_signed, limit):
        return bits <= (limit if is_signed else limit - 1)

    def fits_wide(m):
        wa, wb = r.dsp_wide_operand_bits
        return any(fits(m.a_bits, m.a_signed, x) and fits(m.b_bits, m.b_signed, y) for x, y in ((wa, wb), (wb, wa)))

    total = 0
    for m in multipliers:
        if m.role == "index" and not r.dsp_inferred:
            continue        # a plain `*` that Yosys leaves in the fabric on this part
        n = min(tiles(m.a_bits, m.a_signed, 0) * tiles(m.b_bits, m.b_signed, 1),
                tiles(m.a_bits, m.a_signed, 1) * tiles(m.b_bits, m.b_signed, 0))
        if n > 1 and r.dsp_wide_operand_bits and fits_wide(m):
            n = r.dsp_wide_cells       # hw/multiplier.py instantiates the wide mode (Gowin)
        total += m.count * n
    return total


@dataclass(frozen=True)
class MemoryUse:
    path: str
    width: int
    depth: int
    rom: bool = False       # has initial contents (weights, parameters)
    logic: bool = False     # a ROM its block's own estimate counts as logic (the decoders' codebooks)

    @property
    def bits(self) -> int:
        return self.width * self.depth

    def distributed(self, lut_ram: bool = True) -> bool:
        """In LUTs (LUT RAM, or logic for a small ROM) rather than block RAM; ``lut_ram``: whether
        the target has LUT RAM (Resources.lut_ram; without it every RAM takes a block)."""
        if self.logic:
            return True
        if self.rom:
            return self.depth <= ROM_LOGIC_MAX_DEPTH
        if not lut_ram:
            return self.depth <= FF_RAM_MAX_DEPTH
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
            # a WeightDecoder's codebook ROMs (up to 256 entries) stayed in logic in Yosys synth_ecp5
            # (docs/compression_decoder.md) and are in WeightDecoder.estimate's LUTs already
            codebook = len(path) >= 2 and path[-2] == "weight_decoder" and path[-1].startswith("codebook")
            mems.append(MemoryUse(".".join(path), int(Shape.cast(data.shape).width), int(data.depth), rom,
                                  logic=codebook))
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

    from ..hw import (
        bypass_add,
        concat,
        fifo,
        fork,
        global_pool,
        maxpool,
        mvu,
        resize,
        stream_register,
        weight_decoder,
        window,
    )
    if isinstance(block, weight_decoder.WeightDecoder):
        e = block.estimate()        # its own model, compared with Yosys in docs/compression_decoder.md
        return e["lut"], e["ff"]
    if isinstance(block, mvu.MVU):
        lanes = block.simd * block.pe
        lut, ff = 415 + 60 * lanes + 3.4 * block.pe * block.acc_bits, 135 + 47 * lanes + 12.2 * block.pe * block.acc_bits
        if block.weight_banks > 1:
            # stage 1b, from its structure (not fitted): the banks' row, the bank index, the
            # delayed input word and flags in FFs; a banks:1 mux per weight bit (LUT4 + PFUMX
            # take a 4:1 mux in about 2 LUTs)
            banks = block.weight_banks
            ff += banks * block.weight_width + 8 * block.simd + 8
            lut += block.weight_width * 2 * ceil((banks - 1) / 3)
        return lut, ff
    if isinstance(block, resize.Resize):
        if block.identity:
            return 0, 0
        if block.widen:
            return 3 * block.out_lanes, 8 * block.cap_lanes + 10
        if block.narrow:
            return 40 * block.in_lanes // block.out_lanes, 8 * block.cap_lanes + 2
        if block.ring:      # slot-select read mux + fill thermometer (Yosys synth_ecp5: 570 LUT / 661 FF for 8 -> 9)
            return 8 * block.cap_lanes + 40, 9 * block.cap_lanes + 16
        g = gcd(block.in_lanes, block.out_lanes)
        return 6 * block.cap_lanes * ceil(log2(block.cap_lanes // g + 1)), 8 * block.cap_lanes + 5
    if isinstance(block, window.SlidingWindow):
        return 450 + 4 * block.lanes, 130 + 10 * block.lanes
    if isinstance(block, fifo.StreamFIFO):
        # + the block-RAM output register's data and valid (hw/fifo.py output_register)
        return (0, 0) if block.depth == 0 else (130 + block.width // 4,
                                                50 + block.width + (block.width + 1) * block.output_register)
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


def logic_memory_cost(m: MemoryUse) -> tuple[float, float]:
    """(LUT4, FF) of a memory the synthesis script builds from logic (Resources.logic_memories);
    rates from a scratch Yosys synth_gowin -family gw5a run of single memories (a ROM about one
    LUT4 per 16 bits + its read register; a RAM a flip-flop per bit + about 1.2 LUT per bit for
    write decode and read mux), checked stage by stage by benchmarks/gowin_moonshot.py's yosys stage."""
    if m.rom:
        return m.bits / 16, m.width
    return 1.2 * m.bits, m.bits + m.width


def family_of(board) -> str:
    """The registry name the estimate counts a squeezehw.boards.registry.Board in (kept for old callers)."""
    return board.name


def estimate(plan, target="ecp5-85f", logic_memories: tuple = ()) -> dict:
    """Predicted resources of the design of ``plan`` (squeezehw.plan.lowering.Plan) on ``target`` (a board
    registry name or Board; the old family names ecp5, ice40, xilinx18, xilinx36 are accepted).

    Multipliers and DSPs are the plan's (no elaboration).  Memories and LUT/FF still come from the
    elaborated design (``plan.inventory``, taken once per plan): the line buffers, FIFOs and
    register banks of the window, pool, Resize and FIFO blocks are shaped inside those blocks (and
    Amaranth's SyncFIFOBuffered), and counting what was built is what keeps this model from
    drifting from the hardware; a second, analytic copy of every block's memory layout would be
    one more place to disagree.  ``logic_memories``: the build's own boxes of memories built from
    logic (:func:`spill_to_logic`), beside the board's."""
    from ..boards.registry import Board
    name = target.name if isinstance(target, Board) else target
    cell, _, _ = bram_kind(target)
    mems, blocks_in = plan.inventory
    mults = plan.multipliers()
    return {"target": name, "family": name, "block_ram_cell": cell,
            **inventory_estimate(mems, blocks_in, target, logic_memories),
            "mac_multipliers": plan.count("mac"), "requant_multipliers": plan.count("requant"),
            "add_multipliers": plan.count("add"), "index_multipliers": plan.count("index"),
            "dsp": dsp_cells(mults, target)}


def inventory_estimate(mems, blocks_in, target, logic_memories: tuple = ()) -> dict:
    """Block RAM, LUT and FF of an inventory (:func:`design_inventory`: the memories and squeezehw
    blocks of a design or of one block) on ``target``: what :func:`estimate` counts for a whole
    plan, usable per block (benchmarks/gowin_moonshot.py compares it with Yosys stage by stage)."""
    res = _resources(target)
    in_logic = [res.in_logic(m.rom, m.depth, m.width, logic_memories) and not m.distributed(res.lut_ram)
                for m in mems]
    dist = [m.distributed(res.lut_ram) or g for m, g in zip(mems, in_logic)]
    logic = [block_logic(b) for b in blocks_in] + [logic_memory_cost(m) for m, g in zip(mems, in_logic) if g]
    return {"block_ram": sum(blocks_for(m.width, m.depth, target) for m, d in zip(mems, dist) if not d),
            "block_ram_bits": sum(m.bits for m, d in zip(mems, dist) if not d),
            "distributed_ram_bits": sum(m.bits for m, d in zip(mems, dist) if d),
            "lut": int(sum(x for x, _ in logic)), "ff": int(sum(y for _, y in logic)),
            "memories": [{"path": m.path, "width": m.width, "depth": m.depth,
                          "blocks": 0 if d else blocks_for(m.width, m.depth, target)}
                         for m, d in zip(mems, dist)]}


def spill_to_logic(plan, target, spare_blocks: int = 0, lut_share: float = 0.9) -> tuple:
    """Boxes (kind, max depth, max width) of memories to build from logic (flip-flops and a read
    mux; LUTs for a ROM) so that the design of ``plan`` fits the block RAM of ``target`` with
    ``spare_blocks`` left over: () when it already fits.  Pass them as ``logic_memories`` to
    :func:`estimate`, ``synthesize`` and ``build_board``, whose Yosys script marks the same memories.

    Greedy, like FINN's per-layer ``ram_style``: the memories that cost fewest LUTs per block RAM
    freed (:func:`logic_memory_cost`: a small RAM, a ROM that fills its blocks) go first, each adding
    the box of its own shape, which also takes any smaller memory of its kind (never more block RAM).  Raises UserError when the part's LUTs
    (``lut_share`` of them at most) run out first."""
    from ..errors import UserError
    res = _resources(target)
    mems, blocks_in = plan.inventory
    boxes: list = []
    est = inventory_estimate(mems, blocks_in, target)
    budget = res.bram - spare_blocks
    if est["block_ram"] <= budget:
        return ()                       # nothing to move (the LUTs are not this function's to judge)
    rom = {m.path: m.rom for m in mems}
    candidates = sorted((m for m in est["memories"] if m["blocks"]), key=lambda m: (logic_memory_cost(
        MemoryUse(m["path"], m["width"], m["depth"], rom=rom[m["path"]]))[0] / m["blocks"], m["path"]))
    for m in candidates:
        if est["block_ram"] <= budget:
            break
        box = ("rom" if rom[m["path"]] else "ram", m["depth"], m["width"])
        if res.in_logic(box[0] == "rom", box[1], box[2], tuple(boxes)):
            continue                    # already taken by an earlier, larger box
        boxes.append(box)
        est = inventory_estimate(mems, blocks_in, target, tuple(boxes))
    fix = "fold with fewer multipliers, compress the weights further or pick a larger part"
    if est["block_ram"] > budget:
        raise UserError(f"the design needs {est['block_ram']} block RAMs even with every memory it can build "
                        f"from logic moved there, more than the {budget} of the part's {res.bram} that may be "
                        f"used ({spare_blocks} kept spare): {fix}")
    if est["lut"] > lut_share * res.lut:
        raise UserError(f"fitting the design into {budget} of the part's {res.bram} block RAMs ({spare_blocks} kept "
                        f"spare) moves {len(boxes)} memory shapes to logic and takes {est['lut']} LUTs, over "
                        f"{lut_share:.0%} of the part's {res.lut}: {fix}")
    return tuple(boxes)
