"""cocotb testbench for squeezehw.sim.harness.SimHarness (run by squeezehw.toolchain.verilator.run).

The job file named by $SQUEEZEHW_SIM_JOB holds the traffic settings and, unless the harness read
the stimulus from a file at time 0 (``+in_mem=FILE``, fast builds), the stimulus beats; this
testbench loads those into the harness, starts it, waits (in coarse steps, so Verilator runs
at full speed) until the harness reports done or stuck, reads back every output beat and the
per-frame cycle stamps, and writes them to the job's result file with the count of output beats
that came after the last expected one (``extra_out``).  Checking against the golden model
happens in the caller, which knows the model.
"""
import json
import os
import time

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge, Timer

PERIOD_NS = 10


async def _load(dut, beats):
    dut.load_en.value = 1
    for addr, value in enumerate(beats):
        dut.load_addr.value = addr
        dut.load_data.value = value
        await RisingEdge(dut.clk)
    dut.load_en.value = 0


async def _start(dut, traffic, n_in, n_out, drain):
    dut.n_in.value = n_in
    dut.n_out.value = n_out
    dut.drain.value = drain
    dut.gap_seed.value = (traffic["seed"] * 40503) & 0xFFFF or 1
    dut.stall_seed.value = (traffic["seed"] * 2654435761 >> 7) & 0xFFFF or 3
    dut.gap_threshold.value = traffic["gap"]
    dut.stall_threshold.value = traffic["stall"]
    dut.gap_burst.value = traffic["gap_burst"]
    dut.stall_burst.value = traffic["stall_burst"]
    dut.start.value = 1
    await RisingEdge(dut.clk)
    dut.start.value = 0


async def _wait(dut, step=4096):
    # a Timer, not ClockCycles: one Python callback per `step` cycles instead of one per cycle
    while True:
        await Timer(PERIOD_NS * step, unit="ns")
        await ReadOnly()
        if int(dut.done.value) or int(dut.stuck.value):
            return
        await RisingEdge(dut.clk)


@cocotb.test()
async def run_job(dut):
    job = json.loads(open(os.environ["SQUEEZEHW_SIM_JOB"]).read())
    n_in, n_out, traffic, drain = job["n_in"], job["n_out"], job["traffic"], job["drain"]
    cocotb.start_soon(Clock(dut.clk, PERIOD_NS, unit="ns").start())
    for sig in ("load_en", "start", "dut_reset", "rd_addr", "rd_stamp_addr", "drain"):
        getattr(dut, sig).value = 0
    dut.rst.value = 1
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    await RisingEdge(dut.clk)          # a registered design reset ends one cycle after rst
    t0 = time.monotonic()
    if "in_beats" in job:
        await _load(dut, job["in_beats"])
    load_s = time.monotonic() - t0

    t0, cpu0 = time.monotonic(), time.process_time()
    await _start(dut, traffic, n_in, n_out, drain)
    reset_cycles = None
    if job.get("reset_after"):
        # let it run part-way, then reset the design (not the harness) and start over
        await ClockCycles(dut.clk, job["reset_after"])
        reset_cycles = job["reset_after"]
        # two edges: a harness with a registered design reset applies it one cycle later
        dut.dut_reset.value = 1
        await ClockCycles(dut.clk, 2)
        dut.dut_reset.value = 0
        await _start(dut, traffic, n_in, n_out, drain)
    await _wait(dut)
    # the simulator's CPU time: unlike the wall clock, not stretched by other work on the machine
    run_s, run_cpu = time.monotonic() - t0, time.process_time() - cpu0
    await RisingEdge(dut.clk)

    stuck = bool(int(dut.stuck.value))
    count = int(dut.out_count.value)
    cycles = int(dut.cycles.value)
    outputs = []
    for a in range(count):
        dut.rd_addr.value = a
        await ReadOnly()
        outputs.append(int(dut.rd_data.value))
        await RisingEdge(dut.clk)
    in_stamps, out_stamps = [], []
    for f in range(job.get("frames", 0) or 0):
        dut.rd_stamp_addr.value = f
        await ReadOnly()
        in_stamps.append(int(dut.rd_in_stamp.value))
        out_stamps.append(int(dut.rd_out_stamp.value))
        await RisingEdge(dut.clk)
    probes = []
    for k in range(job.get("probes", 0)):
        dut.probe_sel.value = k
        await ReadOnly()
        probes.append(int(dut.probe_data.value))
        await RisingEdge(dut.clk)
    with open(job["result"], "w") as f:
        json.dump({"outputs": outputs, "stuck": stuck, "cycles": cycles, "in_count": int(dut.in_count.value),
                   "extra_outputs": int(dut.extra_out.value),
                   "in_stamps": in_stamps, "out_stamps": out_stamps, "load_seconds": round(load_s, 3),
                   "run_seconds": round(run_s, 3), "run_cpu_seconds": round(run_cpu, 3),
                   "reset_after": reset_cycles, "probes": probes}, f)
