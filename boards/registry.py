"""Registry of synthesis targets: two real boards and three bare parts.

Each :class:`Board` says which open flow to run (Yosys ``synth_<family>``, then nextpnr where an open
place-and-route exists) and what the part holds, so a design can be checked for fit *before* the slow
place-and-route and so the folding pass can budget against the same numbers.

The resource figures are the device's own: the ECP5 and iCE40 counts are those nextpnr 0.11 reports as
``available`` in its ``--report`` JSON (e.g. ``TRELLIS_COMB 83640``, ``MULT18X18D 156``, ``DP16KD 208``,
``ICESTORM_LC 5280``, ``ICESTORM_DSP 8``, ``ICESTORM_RAM 30``, ``ICESTORM_SPRAM 4``, ``SB_IO 39`` on SG48);
the UltraScale+ counts are AMD's product table for the XCZU9EG (DS891), since no open place-and-route
for that family is used here.  Package I/O for the LFE5U-85F in CABGA381 (205) is Lattice's data sheet
figure (nextpnr counts every pad of the die, 365).  The Gowin counts are nextpnr-himbaechel-gowin's
``available`` figures (GW5AST-138C: ``LUT4 138240``, ``DFF 138240``, ``MULT12X12 596`` = 298 DSP blocks
x 2, ``BSRAM 340``, ``IOB 324``; GW2A-18C: ``LUT4 20736``, ``DFF 15552``, ``MULT9X9 96`` = 48 MULT18X18
x 2, ``BSRAM 46``, ``IOB 384``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..errors import UserError

__all__ = ["Resources", "Board", "BOARDS", "get_board", "board_names"]


@dataclass(frozen=True)
class Resources:
    """What one part holds.  Block RAM is counted in the family's native block.

    ``lut`` counts LUT4s (ECP5, iCE40 logic cells) or LUT6s (UltraScale+), as ``lut_inputs`` says.
    ``bram`` counts DP16KD (ECP5, 18 Kbit), SB_RAM40_4K (iCE40, 4 Kbit) or RAMB18E2 (UltraScale+,
    18 Kbit; one RAMB36E2 is two).  ``spram`` counts iCE40 UltraPlus SPRAM (256 Kbit each).
    ``io`` counts user I/O pins of the package (0: not checked, as for the synthesis-only parts).
    """
    lut: int
    lut_inputs: int
    ff: int
    dsp: int
    dsp_cell: str
    bram: int
    bram_bits: int
    bram_cell: str
    spram: int = 0
    spram_bits: int = 0
    io: int = 0
    # how the cost model counts memories and multipliers in this part's own cells
    # (squeezehw.plan.resources): the block RAM's (width, depth) modes, the bits of one block that hold
    # byte-wide data (a 9-bit-wide mode leaves the parity bit unused; 0: all of ``bram_bits``),
    # and the operand widths of one DSP multiplier's two ports, signed, and unsigned (() = one bit
    # less than signed, as on ECP5, whose MULT18X18D hw/multiplier.py drives as signed 18 x 18)
    bram_modes: tuple[tuple[int, int], ...] = ()
    bram_data_bits: int = 0
    dsp_operand_bits: tuple[int, int] = (18, 18)
    dsp_unsigned_bits: tuple[int, int] = ()
    # a wider multiplier mode that costs ``dsp_wide_cells`` cells (Gowin: MULTALU27X18 = two
    # MULT12X12 halves of a GW5A block; MULT18X18 = two MULT9X9 on GW2A); () = none
    dsp_wide_operand_bits: tuple[int, int] = ()
    dsp_wide_cells: int = 1
    # whether Yosys maps a plain ``*`` (the windows' address multiplies) to DSP cells on this part
    dsp_inferred: bool = True
    # whether the fabric has LUT RAM (the iCE40 has none: Yosys puts every RAM, however small, in a
    # block RAM; only small ROMs become logic)
    lut_ram: bool = True
    # memories built from logic instead of block RAM on a part short of block RAM: boxes
    # (kind, max depth, max width), kind "rom" (initialised, never written: LUTs, about one LUT4
    # per 16 bits) or "ram" (flip-flops and a read mux).  The synthesis script marks them
    # (squeezehw.toolchain.synth.logic_memory_commands) and the estimate counts them the same way.
    logic_memories: tuple = ()

    def in_logic(self, rom: bool, depth: int, width: int, extra: tuple = ()) -> bool:
        """Whether a ``width`` x ``depth`` memory is one of :attr:`logic_memories` or of the
        build's ``extra`` boxes (squeezehw.plan.resources.spill_to_logic)."""
        kind = "rom" if rom else "ram"
        return any(k == kind and depth <= d and width <= w for k, d, w in (*self.logic_memories, *extra))

    def __post_init__(self):
        for name in ("lut", "ff", "dsp", "bram", "bram_bits", "spram", "spram_bits", "io", "bram_data_bits"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"Resources.{name} must be a non-negative int, not {value!r}")
        if self.lut_inputs not in (4, 6):
            raise ValueError(f"Resources.lut_inputs must be 4 or 6, not {self.lut_inputs!r}")

    @property
    def bram_total_bits(self) -> int:
        return self.bram * self.bram_bits + self.spram * self.spram_bits

    @property
    def byte_budget(self) -> int:
        """Bytes of byte-wide data the block RAM (and SPRAM) can hold: the parameter budget of
        squeezehw.plan.memory."""
        return (self.bram * (self.bram_data_bits or self.bram_bits) + self.spram * self.spram_bits) // 8


@dataclass(frozen=True)
class Board:
    """One synthesis target.

    ``family`` selects the flow: ``"ecp5"`` (synth_ecp5 + nextpnr-ecp5 + ecppack), ``"ice40"``
    (synth_ice40 + nextpnr-ice40 + icepack), ``"gowin"`` (synth_gowin + nextpnr-himbaechel-gowin +
    gowin_pack; ``chipdb`` names the device database, ``dsp`` the RegisteredMultiplier family of
    squeezehw.hw.multiplier) or ``"xilinx"`` (synth_xilinx only; ``pnr`` is False).
    ``byte_budget``: bytes of byte-wide block RAM for parameters (as squeezehw.plan.memory.BOARDS).
    ``nextpnr_args`` are the device/package options for nextpnr.  ``platform`` names an amaranth-boards
    platform class (``"module:Class"``) for board-level builds, or is None for a bare part;
    ``board_top`` the UART board top (``"module:Class"`` in boards/top.py) built on that platform.
    ``multiplier`` is the multiplier primitive the hardware uses on this part (hw/multiplier.py:
    ``"ecp5"`` = MULT18X18D with its own registers, ``"generic"`` = ``*`` between registers).

    A new target is one more entry in ``BOARDS`` below; every field after ``resources`` has a
    default, so an entry names only what differs.
    """
    name: str
    family: str
    device: str
    package: str
    description: str
    default_mhz: float
    resources: Resources
    synth_command: str
    nextpnr_args: tuple[str, ...] = ()
    platform: str | None = None
    clock: str | None = None
    pnr: bool = True
    aliases: tuple[str, ...] = field(default=())
    multiplier: str = "generic"
    board_top: str | None = None
    board_nextpnr_args: tuple[str, ...] = ()     # extra nextpnr options for the board-top build
    chipdb: str | None = None                    # Gowin: nextpnr-himbaechel's device database name

    @property
    def byte_budget(self) -> int:
        return self.resources.byte_budget

    def platform_class(self):
        """The amaranth-boards platform class of a real board; UserError for a bare part."""
        if self.platform is None:
            raise UserError(f"'{self.name}' is a bare part, not a board: it has no pins or clock to build a "
                            f"board top for; use synthesize() for it, or pick a board: "
                            f"{', '.join(b.name for b in BOARDS.values() if b.platform)}")
        import importlib
        module_name, _, class_name = self.platform.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            raise UserError(f"board '{self.name}' needs {module_name} ({e}); "
                            f"install it with `pip install amaranth-boards`") from e
        return getattr(module, class_name)

    def board_top_class(self):
        """The UART board top (boards/top.py) class of a real board; UserError for a bare part."""
        if self.board_top is None:
            raise UserError(f"'{self.name}' has no UART board top; boards with one: "
                            f"{', '.join(b.name for b in BOARDS.values() if b.board_top)}")
        import importlib
        module_name, _, class_name = self.board_top.partition(":")
        return getattr(importlib.import_module(module_name), class_name)

    def to_json(self) -> dict:
        d = asdict(self)
        d["nextpnr_args"] = list(self.nextpnr_args)
        d["aliases"] = list(self.aliases)
        d["board_nextpnr_args"] = list(self.board_nextpnr_args)
        return d


# Block RAM modes (width, depth) of the native blocks; squeezehw.plan.resources counts each memory in the
# cheapest mode, tiled.
_DP16KD_MODES = ((1, 16384), (2, 8192), (4, 4096), (9, 2048), (18, 1024), (36, 512))
_SB_RAM40_4K_MODES = ((2, 2048), (4, 1024), (8, 512), (16, 256))
_RAMB18E2_MODES = _DP16KD_MODES

_ECP5_85F = Resources(lut=83_640, lut_inputs=4, ff=83_640, dsp=156, dsp_cell="MULT18X18D",
                      bram=208, bram_bits=18_432, bram_cell="DP16KD", io=205,
                      bram_modes=_DP16KD_MODES, bram_data_bits=16_384, dsp_operand_bits=(18, 18))
_UP5K_SG48 = Resources(lut=5_280, lut_inputs=4, ff=5_280, dsp=8, dsp_cell="SB_MAC16",
                       bram=30, bram_bits=4_096, bram_cell="SB_RAM40_4K",
                       spram=4, spram_bits=262_144, io=39,
                       bram_modes=_SB_RAM40_4K_MODES, bram_data_bits=4_096, dsp_operand_bits=(16, 16),
                       dsp_unsigned_bits=(16, 16), lut_ram=False)
_ZU9EG = Resources(lut=274_080, lut_inputs=6, ff=548_160, dsp=2_520, dsp_cell="DSP48E2",
                   bram=1_824, bram_bits=18_432, bram_cell="RAMB18E2", io=0,
                   bram_modes=_RAMB18E2_MODES, bram_data_bits=16_384, dsp_operand_bits=(27, 18))

# Gowin: MULT12X12 counts half a GW5A DSP block (a MULTALU27X18 is two); MULT9X9 half a GW2A MULT18X18.
# BSRAM 18 Kbit; at byte widths (x8/x16) a BSRAM holds 16 Kbit, at x9/x18/x36 the full 18.
# Yosys maps no plain GW5A multiply to a DSP (fabric logic); on GW2A it infers MULT9X9/MULT18X18.
_BSRAM_MODES = _DP16KD_MODES
_GW5AST_138C = Resources(lut=138_240, lut_inputs=4, ff=138_240, dsp=596, dsp_cell="MULT12X12",
                         bram=340, bram_bits=18_432, bram_cell="BSRAM", io=324,
                         bram_modes=_BSRAM_MODES, bram_data_bits=16_384, dsp_operand_bits=(12, 12),
                         dsp_wide_operand_bits=(27, 18), dsp_wide_cells=2, dsp_inferred=False,
                         # No LUT RAM: the GW5A series has only ROM16 (a plain LUT) of the Gowin
                         # shadow-RAM modes (Apycula's maintainer, YosysHQ/nextpnr#1542 and
                         # YosysHQ/apicula#378), although nextpnr 0.11's database still offers
                         # RAM16SDP4 cells; so synth_command has -nolutram.  Block RAM is the
                         # scarce resource on this part for a whole ImageNet network: per-channel
                         # parameter ROMs (<= 256 deep, 10 Kbit) become LUTs and the MVUs'
                         # 15-deep output FIFOs flip-flops instead of taking a BSRAM each.
                         lut_ram=False, logic_memories=(("rom", 256, 40), ("ram", 16, 16)))
_GW2A_18C = Resources(lut=20_736, lut_inputs=4, ff=15_552, dsp=96, dsp_cell="MULT9X9",
                      bram=46, bram_bits=18_432, bram_cell="BSRAM", io=384,
                      bram_modes=_BSRAM_MODES, bram_data_bits=16_384, dsp_operand_bits=(9, 9),
                      dsp_wide_operand_bits=(18, 18), dsp_wide_cells=2)

_ECP5_ARGS = ("--85k", "--package", "CABGA381", "--speed", "6")
_UP5K_ARGS = ("--up5k", "--package", "sg48")

BOARDS: dict[str, Board] = {b.name: b for b in [
    Board(name="ulx3s-85f", family="ecp5", device="LFE5U-85F", package="CABGA381",
          description="Radiona ULX3S with a Lattice ECP5 LFE5U-85F, 25 MHz oscillator",
          default_mhz=25.0, resources=_ECP5_85F, synth_command="synth_ecp5 -abc9",
          nextpnr_args=_ECP5_ARGS, platform="amaranth_boards.ulx3s:ULX3S_85F_Platform",
          clock="clk25", aliases=("ulx3s",), multiplier="ecp5", board_top="squeezehw.boards.top:ULX3STop",
          # router1 crawled on a 40k-LUT design (about 30 s per 1,000 of 119,200 arcs here) and
          # stalled at ~46,000 overused arcs on the default model at 100 MHz
          board_nextpnr_args=("--router", "router2")),
    Board(name="icebreaker", family="ice40", device="iCE40UP5K", package="SG48",
          description="1BitSquared iCEBreaker with a Lattice iCE40 UltraPlus UP5K, 12 MHz oscillator",
          default_mhz=12.0, resources=_UP5K_SG48, synth_command="synth_ice40 -dsp",
          nextpnr_args=_UP5K_ARGS, platform="amaranth_boards.icebreaker:ICEBreakerPlatform",
          clock="clk12", board_top="squeezehw.boards.top:ICEBreakerTop"),
    Board(name="ecp5-85f", family="ecp5", device="LFE5U-85F", package="CABGA381",
          description="bare Lattice ECP5 LFE5U-85F (speed 6), out-of-context core measurement",
          default_mhz=100.0, resources=_ECP5_85F, synth_command="synth_ecp5 -abc9",
          nextpnr_args=_ECP5_ARGS, aliases=("lfe5u-85f",), multiplier="ecp5"),
    Board(name="up5k", family="ice40", device="iCE40UP5K", package="SG48",
          description="bare Lattice iCE40 UltraPlus UP5K in SG48",
          default_mhz=24.0, resources=_UP5K_SG48, synth_command="synth_ice40 -dsp",
          nextpnr_args=_UP5K_ARGS, aliases=("ice40up5k",)),
    Board(name="tang-mega-138k-pro", family="gowin", device="GW5AST-LV138FPG676AC1/I0", package="FPG676A",
          description="Sipeed Tang Mega 138K Pro Dock with a Gowin GW5AST-138C, 50 MHz oscillator",
          default_mhz=50.0, resources=_GW5AST_138C, synth_command="synth_gowin -family gw5a -nolutram",
          nextpnr_args=("--device", "GW5AST-LV138FPG676AC1/I0", "--vopt", "family=GW5AST-138C"),
          platform="squeezehw.boards.gowin:TangMega138kProPlatform", clock="clk50", chipdb="GW5AST-138C",
          multiplier="gw5a", board_top="squeezehw.boards.top:TangMega138KTop", aliases=("tang-mega-138k", "gw5ast-138c")),
    Board(name="tang-primer-20k", family="gowin", device="GW2A-LV18PG256C8/I7", package="PG256",
          description="Sipeed Tang Primer 20K (Dock) with a Gowin GW2A-18C, 27 MHz oscillator",
          default_mhz=27.0, resources=_GW2A_18C, synth_command="synth_gowin -family gw2a",
          nextpnr_args=("--device", "GW2A-LV18PG256C8/I7", "--vopt", "family=GW2A-18C"),
          platform="squeezehw.boards.gowin:TangPrimer20kPlatform", clock="clk27", chipdb="GW2A-18C",
          multiplier="gw2a", board_top="squeezehw.boards.top:TangPrimer20KTop", aliases=("tang-primer", "gw2a-18c")),
    # No open place-and-route for UltraScale+ is installed here: Yosys figures only, no Fmax.
    Board(name="xczu9eg", family="xilinx", device="XCZU9EG", package="FFVB1156",
          description="bare AMD Zynq UltraScale+ XCZU9EG (the ZCU102's part), synthesis only",
          default_mhz=200.0, resources=_ZU9EG, synth_command="synth_xilinx -family xcup -noiopad",
          pnr=False, aliases=("zcu102",)),
]}

_ALIASES = {alias: b.name for b in BOARDS.values() for alias in b.aliases}


def board_names() -> list[str]:
    """Names of the known targets, boards first."""
    return list(BOARDS)


def get_board(name) -> Board:
    """The :class:`Board` called ``name`` (case-insensitive; aliases such as ``ulx3s`` accepted)."""
    if isinstance(name, Board):
        return name
    if not isinstance(name, str) or not name:
        raise UserError(f"board must be a name such as 'ulx3s-85f', not {name!r}")
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in BOARDS:
        known = ", ".join(f"{b.name} ({b.device})" for b in BOARDS.values())
        raise UserError(f"unknown board '{name}'; known boards and parts: {known}")
    return BOARDS[key]
