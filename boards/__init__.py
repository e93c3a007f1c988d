"""Board support: the home of thin board tops (clock, reset and pins around the accelerator core).

The target registry itself lives in :mod:`squeezehw.boards` (installed with the package); this folder
holds what is specific to one physical board and is re-exported here for scripts run from the
repository root.  See ``boards/README.md`` for how to add a board.

Rule (DESIGN.md section 6): accelerator blocks never touch pins.  A board top is an Amaranth
``Elaboratable`` that requests the board's resources (``platform.request(..., dir="-")`` with
``amaranth.lib.io`` buffers), instantiates the core, and is built with
:func:`squeezehw.synth.build_board`.
"""
from squeezehw.boards import BOARDS, Board, Resources, board_names, get_board  # noqa: F401

__all__ = ["BOARDS", "Board", "Resources", "board_names", "get_board"]
