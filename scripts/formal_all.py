#!/usr/bin/env python3
"""Run every formal case of squeezehw.sim.formal (bmc and, where listed, prove) at the larger depths
and print a markdown table (and optionally JSON).

    .venv/bin/python scripts/formal_all.py [--json out.json] [--fast] [--engine yices|z3] [FILTER...]
"""
import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from squeezehw.sim import formal  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("filters", nargs="*", help="only cases whose name contains one of these")
    ap.add_argument("--json", help="write the results as JSON here")
    ap.add_argument("--fast", action="store_true", help="use the test depths instead")
    ap.add_argument("--engine", default="yices")
    ap.add_argument("--timeout", type=int, default=600, help="seconds per run")
    a = ap.parse_args(argv)
    msg = formal.tools_missing(a.engine)
    if msg:
        print(msg, file=sys.stderr)
        return 2
    rows = []
    print("| block | property | mode | depth | result | seconds |")
    print("|---|---|---|---|---|---|")
    for c in formal.CASES:
        if a.filters and not any(f in c.name for f in a.filters):
            continue
        for mode in c.modes:
            depth = c.depth if a.fast else c.full_depth
            r = formal.run_case(c, mode=mode, depth=depth, engine=a.engine, timeout=a.timeout)
            rows.append({"block": c.block, "property": c.prop, "mode": mode, "depth": depth,
                         "result": r.result, "seconds": r.seconds, "workdir": r.workdir})
            print(f"| {c.block} | {c.prop} | {mode} | {depth} | {r.result} | {r.seconds} |",
                  flush=True)
            if r.result != "PASS":
                print(r.log_tail, file=sys.stderr)
    if a.json:
        Path(a.json).write_text(json.dumps({"engine": a.engine, "results": rows}, indent=1))
    return 0 if all(r["result"] == "PASS" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
