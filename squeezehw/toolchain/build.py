"""Verilog generation: an integer model + a folding -> rtl_out/NAME/ with Verilog, memory images
and a JSON description of the design.

Output folder (all files deterministic: the same inputs give the same bytes):

- ``NAME.v``            the accelerator (top module ``NAME``, ports clk, rst, i__*, o__*), with
                        every weight memory's contents inline (Verilog initial values)
- ``mem/LAYER.hex``     the same weight memory images, one word per line in hex (address order;
                        a banked memory's row holds its banks side by side, hw/mvu.py),
                        for inspection and for flows that load memories separately
- ``design.json``       the build plan (squeezehw/plan/lowering.py): per layer PE, SIMD, expected cycles,
                        multipliers, accumulator bits, weight memory bits, FIFO depths; totals; the
                        resource estimate; the build config; keys "top" and "verilog" name the
                        module and file
- ``config.json``       the build config (squeezehw/plan/config.py) with the folding inline:
                        ``squeezehw build --config DIR/config.json`` rebuilds the same bytes
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

from ..outputs import check_output_dir, replace_dir
from ..plan.folding import Folding
from ..quant.intmodel import IntModel

__all__ = ["design_summary", "write_design", "module_name"]


def module_name(model: IntModel) -> str:
    name = re.sub(r"[^A-Za-z0-9_]", "_", model.name)
    return name if name.startswith("squeezehw_") else "squeezehw_" + name


# the parts design.json's estimated_resources reports (registry names; old keys kept)
ESTIMATE_TARGETS = {"ecp5": "ecp5-85f", "ice40": "up5k", "xilinx36": "xilinx36"}


def design_summary(plan, accel=None, config=None) -> dict:
    """The design's figures, all read from the build plan (``accel``: its Accelerator, for the
    stream widths)."""
    model = plan.model
    accel = accel or plan.accelerator()
    rows = plan.table()
    fifos = plan.fifos()
    s = plan.summary()
    fifo_bits = sum(v["memory_bits"] for v in fifos.values())
    from ..plan.resources import estimate
    targets = dict(ESTIMATE_TARGETS)
    if config is not None and config.board:
        targets["board"] = config.board_entry().name
    resources = {key: {k: v for k, v in estimate(plan, t).items() if k != "memories"}
                 for key, t in targets.items()}
    d = {
        "format": "squeezehw-design", "version": 1,
        "model": model.name, "top": module_name(model), "verilog": f"{module_name(model)}.v",
        "input": {"channels": model.in_ch, "height": model.height, "width": model.width,
                  "lanes": accel.in_lanes, "beats_per_frame": model.height * model.width * model.in_ch // accel.in_lanes},
        "output": {"width": accel.out_width, "beats_per_frame": model.classes + 1,
                   "classes": model.classes, "logit_bits": model.logit_bits},
        "layers": rows,
        "fifos": fifos,
        "stage_fifos": plan.stage_fifos(),
        "totals": {**s, "fifo_bits": fifo_bits, "weight_bytes": (s["weight_bits"] + 7) // 8},
        "dsp": plan.target.multiplier, "requant": plan.target.requant,
        "estimated_resources": resources,       # cost model (squeezehw/plan/resources.py), not a tool report
    }
    if config is not None:
        d["config"] = config.to_dict()
    return d


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
        lines.append(f"estimated on {r.get('target', fam)}: {r['lut']} LUT, {r['ff']} FF, {r['dsp']} DSP "
                     f"({r['mac_multipliers']} MAC, {r['requant_multipliers']} requantisation, "
                     f"{r.get('add_multipliers', 0)} bypass-add multipliers), {r['block_ram']} {r['block_ram_cell']}")
    return "\n".join(lines)


def write_design(model: IntModel, folding: Folding, out_dir, *, progress: bool = True,
                 dsp: str = "generic", requant: str = "parallel", config=None, weight_codes=None) -> dict:
    """Lower (model, folding, target) to the build plan and write its Verilog folder.

    ``dsp``: the multiplier primitive (``"ecp5"``: every multiply an ECP5 MULT18X18D with its own
    registers, hw/multiplier.py; ``"generic"``: ``*`` between the same registers, for any tool);
    ``requant``: the requantiser (``"parallel"`` or ``"serial"``).  ``config`` (a BuildConfig):
    its target wins over ``dsp``/``requant`` and its ``weights`` decide which convs keep their
    codebook-compressed weights (else ``weight_codes``, {conv name: PackedWeights}); it is
    recorded, with the folding inline, in config.json and design.json."""
    from amaranth.back import verilog

    from ..plan.lowering import Target, lower
    out_dir = check_output_dir(out_dir)       # refuse before the (slow) Verilog generation
    target = config.target() if config is not None else Target(multiplier=dsp, requant=requant)
    codes = config.weight_codes(model, folding) if config is not None else weight_codes
    plan = lower(model, folding, target, weight_codes=codes)
    recorded = config.recorded(folding) if config is not None else None
    accel = plan.accelerator()
    summary = design_summary(plan, accel, recorded)
    top = summary["top"]
    if progress:
        import sys
        print(f"[squeezehw] generating Verilog for {top} ({target.multiplier} multipliers, {target.requant} "
              "requantiser) ...", file=sys.stderr, flush=True)
    text = verilog.convert(accel, name=top, emit_src=False)

    def fill(tmp: Path) -> None:
        (tmp / f"{top}.v").write_text(text)
        (tmp / "mem").mkdir()
        for name, block in _mvus(accel):
            if block.weight_code is None:      # a banked memory's rows hold its banks side by side
                words, width = block.weight_memory_words()
            else:       # the compressed stream the WeightDecoder reads
                words, width = block.weight_code.words, block.weight_code.word_bits
            digits = max(1, (width + 3) // 4)
            (tmp / "mem" / f"{name}.hex").write_text("".join(f"{w:0{digits}x}\n" for w in words))
        (tmp / "design.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
        if recorded is not None:
            (tmp / "config.json").write_text(recorded.to_json() + "\n")
        (tmp / "folding.json").write_text(folding.to_json(model.name) + "\n")
        (tmp / "summary.txt").write_text(summary_text(summary) + "\n")

    replace_dir(out_dir, fill)
    return summary


def board_bitstream(build_dir, *, out_dir=None, baud: int = 115200, seed: int = 1, progress: bool = True):
    """A flashable bitstream of the UART board top (boards/top.py, what ``squeezehw run-board``
    talks to) for the design of a ``squeezehw build`` folder built with ``--board``.

    The design is rebuilt from the folder's config.json (the same bytes as its Verilog, see
    squeezehw/plan/config.py), wrapped in the board's top (``Board.board_top``: PLL to the config's
    clock, UART at ``baud``) and built with the board's amaranth-boards platform and options
    (squeezehw.toolchain.synth.build_board).  Returns (SynthReport, Plan, board top); files under ``out_dir``
    (default BUILD/board-<board>)."""
    from ..errors import UserError
    from ..pipeline import folding_for_config, resolve_model
    from ..plan.config import BuildConfig
    from ..plan.lowering import lower
    from .synth import build_board
    build_dir = Path(build_dir)
    config = BuildConfig.load(build_dir)
    config.check_model_file()
    board = config.board_entry()
    if board is None:
        raise UserError(f"{build_dir} was built without --board; rebuild it with --board ulx3s-85f or "
                        "--board icebreaker (the board sets the DSP budget, multiplier primitive and top)")
    top_cls = board.board_top_class()
    model = resolve_model(config.model, progress=progress)
    folding = folding_for_config(config, model)
    plan = lower(model, folding, config.target(), weight_codes=config.weight_codes(model, folding))
    top = top_cls(plan.accelerator(), baud=baud, core_hz=config.clock_mhz * 1e6)
    out = Path(out_dir) if out_dir else build_dir / f"board-{board.name}"
    report = build_board(top, board=board.name, out_dir=out, seed=seed, progress=progress,
                         nextpnr_extra=board.board_nextpnr_args)
    return report, plan, top


def _mvus(accel):
    """(conv name, MVU) of an accelerator that has been elaborated (converted to Verilog)."""
    from ..hw.mvu import MVU
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
