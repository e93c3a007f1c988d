#!/usr/bin/env python3
"""Mutation check of the fast test tier: plant one small bug at a time and see whether a test fails.

Each curated mutant below replaces one piece of source text (it must occur exactly once) in a
scratch copy of the repository (the tracked and untracked-but-not-ignored files; never the working
tree itself), then runs that mutant's fast-tier tests there (block unit tests in tests/hw/, the
formal cases, the golden-model/property/quantizer tests; ``pytest -x``, first failure stops).  A
mutant is *killed* when a test fails, *survived* when they all pass.  Prints one line per mutant
and writes a JSON table: mutant, file, result, killing test, seconds.

    .venv/bin/python scripts/mutate.py [--jobs 2] [--json docs/results/mutation.json] [FILTER...]
    .venv/bin/python scripts/mutate.py --baseline    # the same selections unmutated: all must pass

The verdict comes from the test outcomes in pytest's JUnit XML report, not the exit status.

Survivors belong in docs/verification.md with the reason.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# fast-tier test selections (pytest arguments), reused by the mutants
GOLDEN = ["tests/test_golden_reference.py", "tests/test_properties.py"]
QUANT = ["tests/test_properties.py", "tests/test_quantize.py"]


def formal(keyword):
    return ["tests/test_formal.py", "-k", f"test_formal_case and ({keyword})"]


def hw(block, formal_kw=None, first=None):
    """The block's unit tests (those matching ``first`` before the rest of the file, so a kill by
    them is quick), then its formal cases."""
    sel = [f"tests/hw/test_{block}.py"]
    if first:
        sel = [*sel, "-k", first, "--", *sel, "-k", f"not ({first})"]
    return sel + (["--", *formal(formal_kw)] if formal_kw else [])


# (id, file, old text, new text, tests).  In ``tests`` a "--" separates pytest runs (each with -x).
MUTANTS = [
    # golden model
    ("golden-negative-ties-round-down", "squeezehw/quant/golden.py",
     "y = (acc * mult + (np.int64(1) << (shift - 1))) >> shift",
     "y = (acc * mult + (np.int64(1) << (shift - 1)) - (acc < 0)) >> shift", GOLDEN),
    ("golden-maxpool-takes-min", "squeezehw/quant/golden.py",
     "np.maximum(out, tap, out=out)", "np.minimum(out, tap, out=out)", GOLDEN),
    ("golden-bypass-rounds-half-down", "squeezehw/quant/golden.py",
     "np.clip((s + (1 << (q.shift - 1))) >> q.shift, 0, 255)",
     "np.clip((s + (1 << (q.shift - 1)) - 1) >> q.shift, 0, 255)", GOLDEN),
    ("golden-argmax-highest-index-wins-tie", "squeezehw/quant/golden.py",
     "np.argmax(logits, axis=1)", "logits.shape[1] - 1 - np.argmax(logits[:, ::-1], axis=1)", GOLDEN),
    ("golden-conv-pads-with-edge", "squeezehw/quant/golden.py",
     "(padding, padding), (padding, padding)))", "(padding, padding), (padding, padding)), mode=\"edge\")",
     GOLDEN),
    # hardware blocks
    ("bypass-rounds-down", "squeezehw/hw/bypass_add.py",
     "q.eq((sums[k] + 1) >> 1)", "q.eq(sums[k] >> 1)", hw("bypass_add", "BypassAdd", "ties")),
    ("bypass-clamps-at-256", "squeezehw/hw/bypass_add.py",
     "Mux(q > 255, 255, q[:8])", "Mux(q > 256, 255, q[:8])", hw("bypass_add", "BypassAdd", "ties")),
    ("bypass-b-always-unsigned", "squeezehw/hw/bypass_add.py",
     "b_shape = signed(8) if self.b_signed else unsigned(8)", "b_shape = unsigned(8)",
     hw("bypass_add", "BypassAdd", "ties")),
    ("mvu-clamps-at-hi+1", "squeezehw/hw/mvu.py",
     "Mux(r > self.out_hi, self.out_hi, r)", "Mux(r > self.out_hi + 1, self.out_hi, r)", hw("mvu", "MVU", "ties or extreme or rounding")),
    ("mvu-clamps-at-lo-1", "squeezehw/hw/mvu.py",
     "Mux(r < self.out_lo, self.out_lo,", "Mux(r < self.out_lo - 1, self.out_lo,", hw("mvu", "MVU", "ties or extreme or rounding")),
    ("mvu-rounds-down", "squeezehw/hw/mvu.py",
     "r.eq((s6_q[p] + 1) >> 1)", "r.eq(s6_q[p] >> 1)", hw("mvu", "MVU", "ties or extreme or rounding")),
    ("mvu-bias-not-loaded", "squeezehw/hw/mvu.py",
     "Mux(s3_first, field(p, 0), acc[p])", "Mux(s3_first, 0, acc[p])", hw("mvu", "MVU", "ties or extreme or rounding")),
    ("mvu-fold0-runs-ahead-of-input", "squeezehw/hw/mvu.py",
     "fire.eq(can_issue & (~bypass | write))", "fire.eq(can_issue)", hw("mvu", "MVU", "ties or extreme or rounding")),
    ("mvu-bypass-flag-misses-reader-step", "squeezehw/hw/mvu.py",
     "[sf == wsf, sf_step == wsf, sf == wsf_step, sf == wsf]", "[sf == wsf, sf == wsf, sf == wsf_step, sf == wsf]",
     hw("mvu", "MVU", "rough or pingpong")),
    ("mvu-credit-never-runs-out", "squeezehw/hw/mvu.py",
     "credit_free.eq(credits_used < self.fifo_depth - 1)", "credit_free.eq(1)",
     hw("mvu", "MVU", "backpressure or rough")),
    ("concat-splits-by-other-side", "squeezehw/hw/concat.py",
     "from_b.eq(beat_next >= self.beats_a)", "from_b.eq(beat_next >= self.beats_b)", hw("concat", "Concat")),
    ("maxpool-takes-min", "squeezehw/hw/maxpool.py",
     "Mux(a[8 * k:8 * k + 8] > b[8 * k:8 * k + 8]", "Mux(a[8 * k:8 * k + 8] < b[8 * k:8 * k + 8]",
     hw("maxpool", "MaxPool")),
    ("maxpool-window-one-short", "squeezehw/hw/maxpool.py",
     "min(size - 1, o * stride + kernel - 1)", "min(size - 1, o * stride + kernel - 2)",
     hw("maxpool", "MaxPool")),
    ("window-padding-reads-memory", "squeezehw/hw/window.py",
     "out.i.payload.eq(Mux(ozero, 0, rp.data))", "out.i.payload.eq(rp.data)",
     hw("window", "SlidingWindow")),
    ("window-top-padding-reads-memory", "squeezehw/hw/window.py",
     "inside.eq((iy >= 0) & (iy < H) & (ix >= 0) & (ix < W))", "inside.eq((iy < H) & (ix >= 0) & (ix < W))",
     hw("window", "SlidingWindow")),
    ("window-issues-a-pixel-early", "squeezehw/hw/window.py",
     "(gt | (px_done & eq))", "(gt | eq)", hw("window", "SlidingWindow")),
    ("decoder-popcount-row-ignores-period-end", "squeezehw/hw/weight_decoder.py",
     "row_end = (slot == n - 1) | last", "row_end = (slot == n - 1)", hw("weight_decoder", "Decoder")),
    ("decoder-pad-on-wrong-vector", "squeezehw/hw/weight_decoder.py",
     "after_is_last = vidx == (V - 2) % V", "after_is_last = vidx == (V - 1) % V", hw("weight_decoder", "Decoder")),
    ("fork-offers-taken-beat-again", "squeezehw/hw/fork.py",
     "o.valid.eq(self.i.valid & ~t)", "o.valid.eq(self.i.valid)", hw("fork", "Fork")),
    ("fifo-level-misses-output-register", "squeezehw/hw/fifo.py",
     "self.level.eq(fifo.level + r_valid + out.held)", "self.level.eq(fifo.level + out.held)", hw("fifo", "FIFO")),
    ("stream-register-skid-keeps-old-beat", "squeezehw/hw/stream_register.py",
     "skid_data.eq(self.i.payload)", "skid_data.eq(main_data)", hw("stream_register", "FIFO")),
    ("resize-widen-swaps-lanes", "squeezehw/hw/resize.py",
     "data.eq(Cat(parts, self.i.payload))", "data.eq(Cat(self.i.payload, parts))", hw("resize", "Resize")),
    ("resize-narrow-shifts-wrong-way", "squeezehw/hw/resize.py",
     "buf.eq(buf >> (8 * lo))", "buf.eq(buf << (8 * lo))", hw("resize", "Resize")),
    ("resize-ring-skips-a-slot", "squeezehw/hw/resize.py",
     "rsel.eq(rsel.rotate_left(1))", "rsel.eq(rsel.rotate_left(2))", hw("resize", "Resize")),
    ("window-kernel-row-stays-on-row", "squeezehw/hw/window.py",
     "raddr.eq(kslot_up + ix0b)", "raddr.eq(kslot + ix0b)", hw("window", "SlidingWindow")),
    # the builds without timing registers (iCE40: Target.timing_registers)
    ("window-comb-pixel-ends-at-kernel-row", "squeezehw/hw/window.py",
     "pix_end = (b == B - 1) & (kx == K - 1) & (ky == K - 1)", "pix_end = (b == B - 1) & (kx == K - 1)",
     hw("window", "SlidingWindow", "comb")),
    ("mvu-comb-credit-one-too-many", "squeezehw/hw/mvu.py",
     "credit_free = credits_used < self.fifo_depth", "credit_free = credits_used <= self.fifo_depth",
     hw("mvu", "MVU", "comb and (backpressure or rough)")),
    ("global-pool-highest-index-wins-tie", "squeezehw/hw/global_pool.py",
     "(k == 0) | (v > best)", "(k == 0) | (v >= best)", hw("global_pool")),
    ("global-pool-drops-second-forward", "squeezehw/hw/global_pool.py",
     "Mux(hit2, fw2_data, b_old)", "b_old", hw("global_pool")),
    ("head-logits-one-bit-short", "squeezehw/hw/head.py",
     "logit_bits=(255 * pixels).bit_length()", "logit_bits=(255 * pixels).bit_length() - 1", hw("head")),
    ("multiplier-a-skips-its-register", "squeezehw/hw/multiplier.py",
     "product = ra * rb", "product = self.a * rb", hw("multiplier")),
    ("fire-concat-sides-swapped", "squeezehw/hw/fire.py",
     "Concat(lanes=lo, channels_a=e1, channels_b=e3)", "Concat(lanes=lo, channels_a=e3, channels_b=e1)",
     hw("fire")),
    # the accelerator's blocks are built from the build plan's records (squeezehw/plan/lowering.py)
    ("plan-pool-stride-is-kernel", "squeezehw/plan/lowering.py",
     "kernel=g.kernel, stride=g.stride, fifo_output_register", "kernel=g.kernel, stride=g.kernel, fifo_output_register",
     ["tests/test_board_top.py", "-k", "accelerator_serial_requant and parallel"]),
    # quantizer integer parts
    ("requant-params-truncates", "squeezehw/quant/intmodel.py",
     "mult = int(round(real_multiplier * 2.0 ** shift))", "mult = int(real_multiplier * 2.0 ** shift)",
     QUANT),
    ("quantize-weights-qmax-one-high", "squeezehw/quant/quantize.py",
     "qmax = 2 ** (w_bits - 1) - 1", "qmax = 2 ** (w_bits - 1)", QUANT),
    ("add-params-truncates-b", "squeezehw/quant/quantize.py",
     "ma, mb = round(real_a * 2.0 ** shift), round(real_b * 2.0 ** shift)",
     "ma, mb = round(real_a * 2.0 ** shift), int(real_b * 2.0 ** shift)", QUANT),
    ("bias-floors-instead-of-rounding", "squeezehw/quant/quantize.py",
     "bq = np.rint(np.asarray(b, np.float64) / (w_scale * in_scale))",
     "bq = np.floor(np.asarray(b, np.float64) / (w_scale * in_scale))", QUANT),
]


def repo_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    return [f for f in out.splitlines() if (ROOT / f).is_file()]


def make_scratch(files) -> Path:
    tmp = Path(tempfile.mkdtemp(prefix="squeezehw-mutant-"))
    for f in files:
        dst = tmp / f
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, dst)
    return tmp


def split_runs(tests):
    runs, cur = [], []
    for t in tests:
        if t == "--":
            runs.append(cur)
            cur = []
        else:
            cur.append(t)
    return runs + [cur] if cur else runs


def junit_outcome(path: Path):
    """(tests run, first failed/errored test id or None, its message) from a JUnit XML report."""
    import xml.etree.ElementTree as ET
    if not path.exists():
        return None
    cases = ET.parse(path).getroot().iter("testcase")
    run, first, message = 0, None, ""
    for case in cases:
        if case.find("skipped") is not None:
            continue
        run += 1
        bad = case.find("failure")
        bad = bad if bad is not None else case.find("error")
        if bad is not None and first is None:
            cls = case.get("classname", "")
            first = f"{cls.replace('.', '/')}.py::{case.get('name')}"
            message = bad.get("message", "")
    return run, first, message


def run_mutant(mutant, files, timeout, each=False):
    name, path, old, new, tests = mutant
    t0 = time.monotonic()
    scratch = make_scratch(files)
    rec = {"mutant": name, "file": path, "result": None, "killed_by": None, "seconds": None}
    try:
        if path is not None:             # None: a baseline run of the unmutated copy
            src = (scratch / path).read_text()
            n = src.count(old)
            if n != 1:
                rec.update(result="error", detail=f"the text to replace occurs {n} times")
                return rec
            (scratch / path).write_text(src.replace(old, new))
        env = dict(os.environ, PYTHONPATH=str(scratch), PYTHONDONTWRITEBYTECODE="1")
        for k, args in enumerate(split_runs(tests)):
            report = scratch / f"junit{k}.xml"
            cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:xdist", "-p", "no:cacheprovider",
                   "--tb=line", "-o", "addopts=", f"--junitxml={report}", *args]
            try:
                p = subprocess.run(cmd, cwd=scratch, env=env, capture_output=True, text=True, timeout=timeout)
            except subprocess.TimeoutExpired:
                rec.update(result="killed", killed_by=f"timeout after {timeout} s: {' '.join(args)}")
                return rec
            # the verdict comes from the test outcomes (JUnit XML), not the exit status: a process
            # that crashes at exit after every test passed has not caught anything
            outcome = junit_outcome(report)
            if outcome is None:
                rec.update(result="error", detail=f"pytest rc {p.returncode}, no report: "
                                                  + " | ".join(p.stdout.strip().splitlines()[-3:])[:400])
                return rec
            tests_run, first_failure, message = outcome
            if each:                     # record every run's verdict instead of stopping at a kill
                rec.setdefault("runs", []).append({"tests": " ".join(args), "killed_by": first_failure})
            if first_failure:
                if rec["result"] is None:
                    rec.update(result="killed", killed_by=first_failure, detail=message[:300])
                if not each:
                    return rec
                continue
            if tests_run == 0:             # a broken selection, not a survivor
                rec.update(result="error", detail=f"no tests selected by {' '.join(args)}")
                return rec
            if p.returncode not in (0, 1):
                rec.setdefault("notes", []).append(f"pytest rc {p.returncode} with no failed test: {' '.join(args)}")
        rec["result"] = rec["result"] or "survived"
        return rec
    finally:
        rec["seconds"] = round(time.monotonic() - t0, 1)
        shutil.rmtree(scratch, ignore_errors=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("filters", nargs="*", help="only mutants whose id contains one of these")
    ap.add_argument("--jobs", type=int, default=2, help="mutants run in parallel (default 2)")
    ap.add_argument("--json", help="write the table here")
    ap.add_argument("--timeout", type=int, default=900, help="seconds per pytest run")
    ap.add_argument("--baseline", action="store_true",
                    help="instead, run each distinct test selection on the unmutated copy (all must pass)")
    ap.add_argument("--each", action="store_true",
                    help="run every test run of a mutant (e.g. unit tests and formal cases) and record "
                         "each one's verdict, instead of stopping at the first kill")
    a = ap.parse_args(argv)
    mutants = [m for m in MUTANTS if not a.filters or any(f in m[0] for f in a.filters)]
    if a.baseline:
        selections = {tuple(m[4]): None for m in mutants}
        mutants = [("baseline " + " ".join(sel), None, None, None, list(sel)) for sel in selections]
    files = repo_files()
    t0 = time.monotonic()
    rows = []
    with ThreadPoolExecutor(a.jobs) as pool:
        for rec in pool.map(lambda m: run_mutant(m, files, a.timeout, a.each), mutants):
            rows.append(rec)
            print(f"{rec['result']:9s} {rec['seconds']:7.1f} s  {rec['mutant']:40s} {rec['killed_by'] or rec.get('detail', '')}",
                  flush=True)
    total = round(time.monotonic() - t0, 1)
    killed = sum(r["result"] == "killed" for r in rows)
    print(f"{killed}/{len(rows)} killed, {sum(r['result'] == 'survived' for r in rows)} survived, "
          f"{sum(r['result'] == 'error' for r in rows)} errors, {total} s with {a.jobs} jobs")
    if a.json:
        load = os.getloadavg() if hasattr(os, "getloadavg") else None
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps({
            "command": "scripts/mutate.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "jobs": a.jobs, "total_seconds": total, "cpus": os.cpu_count(), "load_at_end": load,
            "python": platform.python_version(), "killed": killed, "mutants": len(rows), "rows": rows},
            indent=1) + "\n")
    if a.baseline:      # every selection must pass unmutated ("survived" = nothing failed)
        return 0 if all(r["result"] == "survived" for r in rows) else 1
    return 0 if killed == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
