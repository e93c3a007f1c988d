"""Drive and observe ``amaranth.lib.stream`` ports in Amaranth's simulator with realistic traffic.

Every hardware block test uses :func:`simulate`: inputs are sent with random gaps (valid dropped for
a random number of cycles), outputs are taken with random back-pressure (ready dropped), and a
watchdog turns a hang into a :class:`StreamDeadlock` naming the stuck port instead of a test that
never ends.  Timing changes with the seed; results must not.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from amaranth.sim import Simulator

__all__ = ["Traffic", "StreamDeadlock", "simulate", "pack_lanes", "unpack_lanes"]


class StreamDeadlock(RuntimeError):
    """No transfer on any port for ``Traffic.watchdog`` cycles while work was still pending."""


@dataclass(frozen=True)
class Traffic:
    """Random stream traffic: per-cycle probabilities of an input gap and an output stall.

    ``burst`` > 1 makes gaps/stalls last a random 1..burst cycles (long stalls), so both
    single-cycle ready pulses and long pauses occur.
    """
    gap: float = 0.0
    stall: float = 0.0
    burst: int = 1
    seed: int = 0
    watchdog: int = 2000

    @classmethod
    def smooth(cls) -> "Traffic":
        return cls()

    @classmethod
    def rough(cls, seed: int = 1) -> "Traffic":
        return cls(gap=0.3, stall=0.4, burst=4, seed=seed)


def pack_lanes(values, width: int = 8) -> int:
    """Lane 0 in the least significant bits; negative values in two's complement."""
    mask = (1 << width) - 1
    out = 0
    for i, v in enumerate(values):
        out |= (int(v) & mask) << (i * width)
    return out


def unpack_lanes(word: int, lanes: int, width: int = 8, signed: bool = False) -> list[int]:
    mask = (1 << width) - 1
    out = []
    for i in range(lanes):
        v = (int(word) >> (i * width)) & mask
        if signed and v >> (width - 1):
            v -= 1 << width
        out.append(v)
    return out


def simulate(dut, inputs: dict, outputs: dict, traffic: Traffic = Traffic(),
             vcd: str | None = None, extra_cycles: int = 0) -> dict:
    """Run ``dut`` until every output port has produced its expected number of beats.

    ``inputs``: {port_name: [payload, ...]} sent in order.  ``outputs``: {port_name: n_beats}.
    Payloads are whatever ``ctx.set`` accepts (ints, or dicts for struct payloads).  Returns
    {port_name: [payload, ...]}; after the expected beats it watches ``extra_cycles`` more cycles
    and fails if any output produces an extra (duplicated) beat.
    """
    rng = random.Random(traffic.seed)
    got = {name: [] for name in outputs}
    progress = {"cycle": 0, "last": 0}
    done = {"inputs": 0}

    def pause(p):
        return rng.randint(1, traffic.burst) if rng.random() < p else 0

    def make_producer(name, beats):
        port = getattr(dut, name)

        async def producer(ctx):
            for beat in beats:
                for _ in range(pause(traffic.gap)):
                    ctx.set(port.valid, 0)
                    await ctx.tick()
                ctx.set(port.payload, beat)
                ctx.set(port.valid, 1)
                await ctx.tick().until(port.ready)
                progress["last"] = progress["cycle"]
            ctx.set(port.valid, 0)
            done["inputs"] += 1
        return producer

    def make_consumer(name, n):
        port = getattr(dut, name)

        async def consumer(ctx):
            stall = 0
            while len(got[name]) < n:
                if stall == 0:
                    stall = -pause(traffic.stall) or 0
                ready = stall == 0
                if stall < 0:
                    stall += 1
                ctx.set(port.ready, ready)
                _, _, valid, payload = await ctx.tick().sample(port.valid, port.payload)
                if ready and valid:
                    got[name].append(payload)
                    progress["last"] = progress["cycle"]
            # duplicates check: keep accepting and make sure nothing else arrives
            ctx.set(port.ready, 1)
            for _ in range(extra_cycles):
                _, _, valid, payload = await ctx.tick().sample(port.valid, port.payload)
                if valid:
                    raise AssertionError(f"{name}: extra beat {payload!r} after the expected {n}")
        return consumer

    async def watchdog(ctx):
        while True:
            await ctx.tick()
            progress["cycle"] += 1
            if progress["cycle"] - progress["last"] > traffic.watchdog:
                pending = {k: f"{len(v)}/{outputs[k]}" for k, v in got.items()}
                raise StreamDeadlock(
                    f"no stream transfer for {traffic.watchdog} cycles at cycle {progress['cycle']}; "
                    f"outputs received {pending}, inputs finished {done['inputs']}/{len(inputs)}")

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for name, beats in inputs.items():
        sim.add_testbench(make_producer(name, list(beats)), background=True)
    for name, n in outputs.items():
        sim.add_testbench(make_consumer(name, n))
    sim.add_testbench(watchdog, background=True)
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
    got["_cycles"] = progress["cycle"]
    return got
