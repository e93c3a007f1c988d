"""Verilog generation: an integer model + a folding -> rtl_out/NAME/ with Verilog, memory images
and a JSON description of the design.

Output folder (all files deterministic: the same inputs give the same bytes):

- ``NAME.v``            the accelerator (top module ``NAME``, ports clk, rst, i__*, o__*), with
                        every weight memory's contents inline (Verilog initial values)
- ``mem/LAYER.hex``     the same weight memory images, one word per line in hex (address order),
                        for inspection and for flows that load memories separately
- ``design.json``       per layer PE, SIMD, expected cycles, multipliers, weight memory bits, FIFO
                        depths; totals; keys "top" and "verilog" name the module and file
- ``folding.json``      the folding used, to rebuild exactly
- ``summary.txt``       the same in a table for people

- ``.squeezehw-output.json`` the manifest that marks the folder as squeezehw's (squeezehw.outputs)

The folder is written to a temporary sibling and swapped into place, so an interrupted build never
leaves a folder that looks complete.  An existing folder is replaced only when it is a previous
squeezehw output holding nothing squeezehw did not write; anything else is refused
(``squeezehw.outputs.check_output_dir``).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from .folding import Folding
from .intmodel import IntModel
from .outputs import check_output_dir, replace_dir

__all__ = ["design_summary", "write_design", "module_name"]


def module_name(model: IntModel) -> str:
    name = re.sub(r"[^A-Za-z0-9_]", "_", model.name)
    return name if name.startswith("squeezehw_") else "squeezehw_" + name


def design_summary(model: IntModel, folding: Folding, accel=None) -> dict:
    """The design's figures from the cost model and the instantiated blocks."""
    from .hw.accelerator import Accelerator
    accel = accel or Accelerator(model=model, folding=folding)
    rows = folding.table(model)
    acc_bits = {c.name: c.acc_bits for c in model.convs()}     # derived from the weights
    for r in rows:
        if r["layer"] in acc_bits:
            r["acc_bits"] = acc_bits[r["layer"]]
    fifos = accel.fifos()
    s = folding.summary(model)
    fifo_bits = sum(v["memory_bits"] for v in fifos.values())
    from .resources import design_inventory, estimate
    mems, blocks = design_inventory(accel)
    resources = {fam: {k: v for k, v in estimate(model, folding, fam, memories=mems, blocks_in=blocks).items()
                       if k != "memories"}
                 for fam in ("ecp5", "ice40", "xilinx36")}
    return {
        "format": "squeezehw-design", "version": 1,
        "model": model.name, "top": module_name(model), "verilog": f"{module_name(model)}.v",
        "input": {"channels": model.in_ch, "height": model.height, "width": model.width,
                  "lanes": accel.in_lanes, "beats_per_frame": model.height * model.width * model.in_ch // accel.in_lanes},
        "output": {"width": accel.out_width, "beats_per_frame": model.classes + 1,
                   "classes": model.classes, "logit_bits": model.logit_bits},
        "layers": rows,
        "fifos": fifos,
        "totals": {**s, "fifo_bits": fifo_bits, "weight_bytes": (s["weight_bits"] + 7) // 8},
        "estimated_resources": resources,       # cost model (squeezehw/resources.py), not a tool report
    }


def summary_text(d: dict) -> str:
    t = d["totals"]
    lines = [f"design {d['top']}  (model {d['model']})",
             f"{'layer':<26}{'kind':<6}{'SIMD':>6}{'PE':>5}{'cycles':>10}{'mults':>7}{'util':>7}{'weight bits':>13}"]
    for r in d["layers"]:
        util = f"{r['utilisation']:.2f}" if r["utilisation"] is not None else "-"
        lines.append(f"{r['layer']:<26}{r['kind']:<6}{r['simd']:>6}{r['pe']:>5}{r['cycles']:>10}"
                     f"{r['multipliers']:>7}{util:>7}{r['weight_bits']:>13}")
    for name, f in d["fifos"].items():
        lines.append(f"FIFO {name}: expand1x1 {f['expand1x1_depth']} x {f['expand1x1_width']} b, "
                     f"bypass {f['bypass_depth']} x {f['bypass_width']} b")
    lines.append(f"expected cycles/frame {t['expected_cycles_per_frame']} (bottleneck {t['bottleneck']}), "
                 f"multipliers {t['multipliers']}, expected MAC efficiency {t['expected_mac_efficiency']:.3f}, "
                 f"weights {t['weight_bytes']} B, FIFOs {t['fifo_bits']} bits")
    for fam, r in d.get("estimated_resources", {}).items():
        lines.append(f"estimated on {fam}: {r['lut']} LUT, {r['ff']} FF, {r['dsp']} multipliers/DSP "
                     f"({r['mac_multipliers']} MAC), {r['block_ram']} {r['block_ram_cell']}")
    return "\n".join(lines)


def write_design(model: IntModel, folding: Folding, out_dir, *, progress: bool = True,
                 dsp: str = "generic") -> dict:
    """``dsp="ecp5"``: every multiply as an ECP5 MULT18X18D with its own registers
    (hw/multiplier.py); ``"generic"``: ``*`` between the same registers, for any tool."""
    from amaranth.back import verilog

    from .hw.accelerator import Accelerator
    from .hw.multiplier import dsp_primitives
    out_dir = check_output_dir(out_dir)       # refuse before the (slow) Verilog generation
    accel = Accelerator(model=model, folding=folding)
    with dsp_primitives(dsp):     # checks the name before anything is built
        summary = design_summary(model, folding, accel)
        summary["dsp"] = dsp
        top = summary["top"]
        if progress:
            import sys
            print(f"[squeezehw] generating Verilog for {top} ({dsp} multipliers) ...", file=sys.stderr, flush=True)
        text = verilog.convert(accel, name=top, emit_src=False)
    def fill(tmp: Path) -> None:
        (tmp / f"{top}.v").write_text(text)
        (tmp / "mem").mkdir()
        for name, block in _mvus(accel):
            words = block.weight_words()
            digits = max(1, (block.weight_width + 3) // 4)
            (tmp / "mem" / f"{name}.hex").write_text("".join(f"{w:0{digits}x}\n" for w in words))
        (tmp / "design.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
        (tmp / "folding.json").write_text(folding.to_json(model.name) + "\n")
        (tmp / "summary.txt").write_text(summary_text(summary) + "\n")

    replace_dir(out_dir, fill)
    return summary


def _mvus(accel):
    """(conv name, MVU) of an accelerator that has been elaborated (converted to Verilog)."""
    from .hw.mvu import MVU
    for p in accel.plan:
        b = p["block"]
        if p["kind"] == "conv":
            yield p["name"], b
        elif p["kind"] == "fire":
            for _, blk in b.chain_blocks:
                if isinstance(blk, MVU):
                    yield blk.name, blk
        elif p["kind"] == "head":
            yield p["name"], b.mvu
