"""On-chip memory needed by an integer model's parameters, and whether it fits a board.

Everything the accelerator keeps in block RAM for the parameters is counted:

* weights, packed at the model's ``w_bits`` per weight (``QConv.weight_bytes``), or, for a conv with
  a shared-weight codebook, its encoded index stream plus its codebook (docs/compression.md);
* biases, one int32 (4 bytes) per output channel;
* requantisation parameters, 3 bytes per output channel (16-bit ``mult`` + one byte for ``shift``);
* bypass-add parameters, 5 bytes per add (two 16-bit multipliers and a shift byte).

Activations (line buffers, FIFOs) are not counted here: they depend on the folding plan.

Board budgets come from the board registry (``squeezehw.boards.registry``, ``Resources.byte_budget``): the
RAM bits usable for **byte-wide data**: a block RAM primitive configured 9 bits wide (ECP5 DP16KD as
2048 x 9, Xilinx RAMB18 as 2048 x 9) stores one byte per word and leaves the ninth (parity) bit
unused, so only 16 of the DP16KD's 18 Kbit count.  iCE40 EBR (4 Kbit) and SPRAM (16-bit words) have
no parity bits.  ``BOARDS`` is that registry's view: board name -> bytes.
"""
from __future__ import annotations

from ..boards.registry import BOARDS as _REGISTRY
from ..boards.registry import get_board
from ..errors import UserError
from ..quant.intmodel import IntModel, QFire

__all__ = ["BOARDS", "DEFAULT_BUDGET", "BudgetError", "memory_report", "check_budget", "board_budget",
           "compressed_weight_report"]

DEFAULT_BUDGET = 10_000_000

BIAS_BYTES = 4          # int32 per output channel
REQUANT_BYTES = 3       # 16-bit mult + 8-bit shift per output channel
ADD_BYTES = 5           # mult_a, mult_b (16 bit each) + shift per bypass add

# board name -> bytes of byte-wide block RAM, from the one board registry (squeezehw.boards.registry)
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
        if c.codebook is not None:
            convs[c.name].update(encoding=c.encoding, index_bits=c.index_bits,
                                 stream_bits=c.stream_bits, codebook_bits=c.codebook_bits)
    adds = sum(1 for l in model.layers if isinstance(l, QFire) and l.bypass is not None)
    wb = sum(v["weight_bytes"] for v in convs.values())
    bb = sum(v["bias_bytes"] for v in convs.values())
    rb = sum(v["requant_bytes"] for v in convs.values())
    ab = ADD_BYTES * adds
    total = wb + bb + rb + ab
    rep = {"convs": convs, "weight_bytes": wb, "bias_bytes": bb, "requant_bytes": rb,
           "add_bytes": ab, "total_bytes": total, "budget_bytes": budget_bytes,
           "fits": total <= budget_bytes, "over_by": max(0, total - budget_bytes)}
    if any(c.codebook is not None for c in model.convs()):
        rep["compressed"] = compressed_weight_report(model)
    return rep


def compressed_weight_report(model: IntModel) -> dict:
    """Encoded weight storage of a model with shared-weight codebooks, and the block RAMs it takes
    on each target of ``squeezehw.boards.registry``.

    Per conv: its stream bits (``dense-index`` or ``bitmap``, docs/compression.md) and codebook bits;
    block RAMs are counted per conv at the target's block granularity, one packed stream per conv
    (``ceil(stream_bits / block_bits)``: a bit stream has no byte lanes, so the parity bits of an
    18-Kbit block count) and, separately, one copy of each codebook (a decoder may keep its codebook
    in LUT RAM instead, or replicate it per lane: the hardware's choice).  A conv without a codebook
    counts its dense weights at ``w_bits``."""
    from ..boards.registry import BOARDS as TARGETS
    convs, stream, book = {}, 0, 0
    for c in model.convs():
        convs[c.name] = {"encoding": c.encoding or "dense", "index_bits": c.index_bits,
                         "entry_bits": c.w_bits, "weights": int(c.weight.size),
                         "nonzero": int((c.weight != 0).sum()), "stream_bits": c.stream_bits,
                         "codebook_bits": c.codebook_bits}
        stream += c.stream_bits
        book += c.codebook_bits
    targets = {}
    for t in TARGETS.values():
        r = t.resources
        if r.bram_bits <= 0 or r.bram_cell in {v["cell"] for v in targets.values()}:
            continue            # one row per kind of block RAM
        sb = sum(-(-v["stream_bits"] // r.bram_bits) for v in convs.values())
        cb = sum(-(-v["codebook_bits"] // r.bram_bits) for v in convs.values())
        targets[t.name] = {"cell": r.bram_cell, "block_bits": r.bram_bits, "stream_blocks": sb,
                           "codebook_blocks": cb, "available": r.bram}
    return {"convs": convs, "stream_bits": stream, "stream_bytes": (stream + 7) // 8,
            "codebook_bits": book, "codebook_bytes": (book + 7) // 8, "block_rams": targets}


def check_budget(model: IntModel, budget_bytes: int, what: str = "the memory budget") -> dict:
    """``memory_report``, raising ``BudgetError`` when the parameters do not fit."""
    rep = memory_report(model, budget_bytes)
    if not rep["fits"]:
        raise BudgetError(
            f"{model.name}: parameters need {rep['total_bytes']:,} bytes "
            + (f"({rep['weight_bytes']:,} of codebook-indexed weights and their codebooks), "
               if "compressed" in rep else f"({rep['weight_bytes']:,} of weights at {model.w_bits} bits), ") +
            f"{rep['over_by']:,} bytes over {what} of {budget_bytes:,} bytes; use fewer weight bits "
            f"(--bits), a smaller model (a smaller family member), or a board with more block RAM")
    return rep
