"""On-chip memory needed by an integer model's parameters, and whether it fits a board.

Everything the accelerator keeps in block RAM for the parameters is counted:

* weights, packed at the model's ``w_bits`` per weight (``QConv.weight_bytes``);
* biases, one int32 (4 bytes) per output channel;
* requantisation parameters, 3 bytes per output channel (16-bit ``mult`` + one byte for ``shift``);
* bypass-add parameters, 5 bytes per add (two 16-bit multipliers and a shift byte).

Activations (line buffers, FIFOs) are not counted here: they depend on the folding plan.

Board budgets come from the board registry (``squeezehw.boards``, ``Resources.byte_budget``): the
RAM bits usable for **byte-wide data**: a block RAM primitive configured 9 bits wide (ECP5 DP16KD as
2048 x 9, Xilinx RAMB18 as 2048 x 9) stores one byte per word and leaves the ninth (parity) bit
unused, so only 16 of the DP16KD's 18 Kbit count.  iCE40 EBR (4 Kbit) and SPRAM (16-bit words) have
no parity bits.  ``BOARDS`` is that registry's view: board name -> bytes.
"""
from __future__ import annotations

from .boards import BOARDS as _REGISTRY, get_board
from .errors import UserError
from .intmodel import IntModel, QFire

__all__ = ["BOARDS", "DEFAULT_BUDGET", "BudgetError", "memory_report", "check_budget", "board_budget"]

DEFAULT_BUDGET = 10_000_000

BIAS_BYTES = 4          # int32 per output channel
REQUANT_BYTES = 3       # 16-bit mult + 8-bit shift per output channel
ADD_BYTES = 5           # mult_a, mult_b (16 bit each) + shift per bypass add

# board name -> bytes of byte-wide block RAM, from the one board registry (squeezehw.boards)
BOARDS: dict[str, int] = {name: b.byte_budget for name, b in _REGISTRY.items()}


class BudgetError(UserError, ValueError):
    """The model's parameters do not fit the on-chip memory budget."""


def board_budget(board: str) -> int:
    """Bytes of byte-wide block RAM on a named board."""
    try:
        return get_board(board).byte_budget
    except UserError:
        raise UserError(f"unknown board {board!r}; choose one of {', '.join(BOARDS)} "
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
