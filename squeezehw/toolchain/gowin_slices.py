"""LUT positions a Gowin netlist needs once nextpnr-himbaechel has packed it, from the Yosys netlist.

A Gowin slice is one LUT4 position (a LUT or an ALU) and one flip-flop, and the flip-flop's D input
comes only from its own slice's LUT or ALU.  nextpnr pairs each LUT with one flip-flop it drives
(its packer's ``constrain_lutffs``; fan-out allowed, first flip-flop taken) and, after placement,
puts a pass-through LUT in front of every other flip-flop (``create_passthrough_luts``): a flip-flop
fed by a flip-flop, an ALU, a wide-LUT mux, a block RAM or a DSP takes a LUT position of its own.
Yosys's LUT count misses those; on the Tang Mega moonshot they were 42,187 of 143,018 positions
(103 % of the part), which is why its placement could not be legalised.

:func:`slice_positions` counts them from a flattened Yosys JSON netlist, the way nextpnr 0.11 pairs
(checked against its log: "Constrained 10066 LUTFF pairs" on that design, the same figure)."""
from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

__all__ = ["slice_positions"]

_LUT = re.compile(r"LUT[1-4]")


def slice_positions(netlist: Path | str | dict, top: str) -> dict:
    """{"lut", "alu", "ff", "ff_paired", "ff_unpaired", "positions", "unpaired_by_driver"} of module
    ``top`` of a flattened Yosys JSON netlist (a path or the loaded dict).  ``positions`` =
    LUT1-4 + ALU + unpaired flip-flops: what must fit the part's LUT4 count.  (nextpnr adds a few
    ALUs of its own at carry-chain ends, about 7 % more on the moonshot, not counted here.)"""
    data = netlist if isinstance(netlist, dict) else json.loads(Path(netlist).read_text())
    try:
        cells = data["modules"][top]["cells"]
    except KeyError:
        raise KeyError(f"no module {top!r} in the netlist (flatten it first)") from None
    driver: dict[int, str] = {}            # net bit -> type of the cell driving it
    for c in cells.values():
        for port, direction in c.get("port_directions", {}).items():
            if direction == "output":
                for bit in c["connections"][port]:
                    if isinstance(bit, int):
                        driver[bit] = c["type"]
    types = Counter(c["type"] for c in cells.values())
    flops = [c for c in cells.values() if c["type"].startswith("DFF")]
    taken: set[int] = set()                # LUT outputs that already have their paired flip-flop
    paired, unpaired = 0, Counter()
    for c in flops:
        bit = c["connections"]["D"][0]
        kind = driver.get(bit, "constant" if isinstance(bit, str) else "port")
        if _LUT.fullmatch(kind) and bit not in taken:
            taken.add(bit)
            paired += 1
        else:
            unpaired[kind] += 1
    lut = sum(n for t, n in types.items() if _LUT.fullmatch(t))
    alu = types.get("ALU", 0)
    n_unpaired = sum(unpaired.values())
    return {"lut": lut, "alu": alu, "ff": len(flops), "ff_paired": paired, "ff_unpaired": n_unpaired,
            "positions": lut + alu + n_unpaired, "unpaired_by_driver": dict(unpaired.most_common())}
