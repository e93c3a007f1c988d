"""Boards (installed as ``squeezehw.boards``; the folder is boards/ in the repository).

``registry`` is the one table of targets (family, part, resources, byte budget, amaranth-boards
platform, multiplier primitive, synthesis options) that the memory check, the cost model, folding,
synthesis and the board tops all read; ``top`` holds the UART board tops (clock, reset and pins around
the accelerator core), ``uart`` and ``protocol`` what they speak, and ``gowin`` the Gowin platform
fixes for the open flow.  See ``boards/README.md`` for how to add a board.

Rule (DESIGN.md section 6): accelerator blocks never touch pins.  A board top is an Amaranth
``Elaboratable`` that requests the board's resources and instantiates the core; it is built with
:func:`squeezehw.toolchain.synth.build_board`.
"""
from .registry import BOARDS, Board, Resources, board_names, get_board

__all__ = ["BOARDS", "Board", "Resources", "board_names", "get_board"]
