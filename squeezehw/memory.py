"""On-chip memory needed by an integer model's parameters, and whether it fits a board.

Everything the accelerator keeps in block RAM for the parameters is counted:

* weights, packed at the model's ``w_bits`` per weight (``QConv.weight_bytes``);
* biases, one int32 (4 bytes) per output channel;
* requantisation parameters, 3 bytes per output channel (16-bit ``mult`` + one byte for ``shift``);
* bypass-add parameters, 5 bytes per add (two 16-bit multipliers and a shift byte).

Activations (line buffers, FIFOs) are not counted here: they depend on the folding plan.

Board budgets (``BOARDS``) count the RAM bits usable for **byte-wide data**: a block RAM primitive
configured 9 bits wide (ECP5 DP16KD as 2048 x 9, Xilinx RAMB36 as 4096 x 9) stores one byte per
word and leaves the ninth (parity) bit unused, so only 16 of the DP16KD's 18 Kbit and 32 of the
RAMB36's 36 Kbit count.  iCE40 EBR (4 Kbit) and SPRAM (16-bit words) have no parity bits.
"""
from __future__ import annotations

from .errors import UserError
from .intmodel import IntModel, QFire

__all__ = ["BOARDS", "DEFAULT_BUDGET", "BudgetError", "memory_report", "check_budget", "board_budget"]

DEFAULT_BUDGET = 10_000_000

BIAS_BYTES = 4          # int32 per output channel
REQUANT_BYTES = 3       # 16-bit mult + 8-bit shift per output channel
ADD_BYTES = 5           # mult_a, mult_b (16 bit each) + shift per bypass add

BOARDS: dict[str, int] = {
    # Lattice ECP5-85F (ULX3S): 208 DP16KD x 16 Kbit of byte data (2 Kbit parity unused).
    "ulx3s-85f": 208 * 16 * 1024 // 8,              # 425,984 bytes
    # Lattice iCE40 UP5K (iCEBreaker): 30 EBR x 4 Kbit + 4 SPRAM x 256 Kbit (1 Mbit).
    "icebreaker": 30 * 4 * 1024 // 8 + 1024 * 1024 // 8,   # 15,360 + 131,072 = 146,432 bytes
    # Xilinx XCZU9EG (ZCU102): 912 RAMB36 x 32 Kbit of byte data (4 Kbit parity unused); no UltraRAM.
    "zcu102": 912 * 32 * 1024 // 8,                 # 3,735,552 bytes
    # Gowin GW5AST-138C (Tang Mega 138K Pro): 340 BSRAM x 16 Kbit at x8/x16 (18 Kbit at x9/x18).
    "tang-mega-138k-pro": 340 * 16 * 1024 // 8,     # 696,320 bytes
    # Gowin GW2A-18C (Tang Primer 20K): 46 BSRAM x 16 Kbit.
    "tang-primer-20k": 46 * 16 * 1024 // 8,         # 94,208 bytes
}

# The other names squeezehw.boards knows for the same parts.
ALIASES = {"ulx3s": "ulx3s-85f", "ecp5-85f": "ulx3s-85f", "lfe5u-85f": "ulx3s-85f",
           "up5k": "icebreaker", "ice40up5k": "icebreaker", "xczu9eg": "zcu102",
           "tang-mega-138k": "tang-mega-138k-pro", "gw5ast-138c": "tang-mega-138k-pro",
           "tang-primer": "tang-primer-20k", "gw2a-18c": "tang-primer-20k"}


class BudgetError(UserError, ValueError):
    """The model's parameters do not fit the on-chip memory budget."""


def board_budget(board: str) -> int:
    """Bytes of byte-wide block RAM on a named board."""
    try:
        return BOARDS[ALIASES.get(board.lower(), board.lower())]
    except KeyError:
        raise UserError(f"unknown board {board!r}; choose one of {', '.join(sorted(BOARDS))} "
                        "or give the budget in bytes with --budget") from None


def memory_report(model: IntModel, budget_bytes: int = DEFAULT_BUDGET) -> dict:
    """Parameter memory of ``model`` per conv and in total, against ``budget_bytes``.

    Returns ``{"convs": {name: {"weight_bytes", "bias_bytes", "requant_bytes", "w_bits",
    "acc_bits"}}, "weight_bytes", "bias_bytes", "requant_bytes", "add_bytes", "total_bytes",
    "budget_bytes", "fits", "over_by"}``.
    """
    if not isinstance(budget_bytes, int) or isinstance(budget_bytes, bool) or budget_bytes <= 0:
        raise UserError(f"budget must be a positive number of bytes, got {budget_bytes!r}")
    convs = {}
    for c in model.convs():
        convs[c.name] = {"weight_bytes": c.weight_bytes, "bias_bytes": BIAS_BYTES * c.out_ch,
                         "requant_bytes": REQUANT_BYTES * c.out_ch, "w_bits": c.w_bits,
                         "acc_bits": c.acc_bits}
    adds = sum(1 for l in model.layers if isinstance(l, QFire) and l.bypass is not None)
    wb = sum(v["weight_bytes"] for v in convs.values())
    bb = sum(v["bias_bytes"] for v in convs.values())
    rb = sum(v["requant_bytes"] for v in convs.values())
    ab = ADD_BYTES * adds
    total = wb + bb + rb + ab
    return {"convs": convs, "weight_bytes": wb, "bias_bytes": bb, "requant_bytes": rb,
            "add_bytes": ab, "total_bytes": total, "budget_bytes": budget_bytes,
            "fits": total <= budget_bytes, "over_by": max(0, total - budget_bytes)}


def check_budget(model: IntModel, budget_bytes: int, what: str = "the memory budget") -> dict:
    """``memory_report``, raising ``BudgetError`` when the parameters do not fit."""
    rep = memory_report(model, budget_bytes)
    if not rep["fits"]:
        raise BudgetError(
            f"{model.name}: parameters need {rep['total_bytes']:,} bytes "
            f"({rep['weight_bytes']:,} of weights at {model.w_bits} bits), "
            f"{rep['over_by']:,} bytes over {what} of {budget_bytes:,} bytes; use fewer weight bits "
            f"(--bits), a smaller model (a smaller family member), or a board with more block RAM")
    return rep
