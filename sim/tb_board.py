"""cocotb testbench for boards.top.BoardTop (run by squeezehw.toolchain.verilator.run_cocotb).

The job file named by $SQUEEZEHW_SIM_JOB holds the bytes the host sends (``send``), the UART bit
period in clock cycles (``divisor``), how many reply bytes to wait for (``n_reply``) and a cycle
limit.  The testbench drives the ``rx`` pin bit by bit (8N1, LSB first), decodes the ``tx`` pin the
way a UART receiver does (start edge, then the middle of each bit) and writes every received byte,
the cycle count and any framing errors it saw to the job's result file.  Decoding the protocol and
comparing with the golden model happens in the caller (tests/test_board_top.py).
"""
import json
import os

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, Timer

PERIOD_NS = 10


async def _send(dut, data, bit_ns):
    for byte in data:
        for level in (0, *((byte >> k) & 1 for k in range(8)), 1):
            dut.rx.value = level
            await Timer(bit_ns, unit="ns")


async def _receive(dut, bit_ns, out, errors):
    while True:
        await FallingEdge(dut.tx)
        # the line changes just after a rising clock edge: sample half a clock later than mid-bit,
        # away from the edges
        await Timer(bit_ns // 2 + PERIOD_NS // 2, unit="ns")
        if int(dut.tx.value):
            errors.append(f"glitch at byte {len(out)}")
            continue
        byte = 0
        for k in range(8):
            await Timer(bit_ns, unit="ns")
            byte |= int(dut.tx.value) << k
        await Timer(bit_ns, unit="ns")
        if not int(dut.tx.value):
            errors.append(f"bad stop bit at byte {len(out)}")
        out.append(byte)


@cocotb.test()
async def run_job(dut):
    job = json.loads(open(os.environ["SQUEEZEHW_SIM_JOB"]).read())
    bit_ns = job["divisor"] * PERIOD_NS
    cocotb.start_soon(Clock(dut.clk, PERIOD_NS, unit="ns").start())
    dut.rx.value = 1
    dut.rst.value = 1
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 2)
    await Timer(PERIOD_NS // 2, unit="ns")      # change rx between clock edges
    received, errors = [], []
    cocotb.start_soon(_receive(dut, bit_ns, received, errors))
    sender = cocotb.start_soon(_send(dut, bytes(job["send"]), bit_ns))
    step, cycles = 2048, 0
    while len(received) < job["n_reply"] and cycles < job["max_cycles"]:
        await Timer(step * PERIOD_NS, unit="ns")
        cycles += step
    sent_all = sender.done()
    # let a few more bit periods pass: any extra reply bytes would be a bug too
    await Timer(30 * bit_ns, unit="ns")
    with open(job["result"], "w") as f:
        json.dump({"reply": received, "tx_errors": errors, "cycles": cycles, "sent_all": sent_all,
                   "status": int(dut.status.value), "busy": int(dut.busy.value)}, f)
