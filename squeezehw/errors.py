"""Errors a user can fix. The command line prints their message (no traceback) and exits non-zero.

Each message names the problem and the fix, e.g. "conv10: PE=7 does not divide 1000 output channels;
choose a divisor such as 8 or 10".
"""


class UserError(Exception):
    """Base class for every error caused by input (files, options, models, boards, tools)."""


class ToolMissingError(UserError):
    """An external tool (Verilator, Yosys, nextpnr, ...) is not installed or failed to start."""
