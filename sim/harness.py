"""Simulation harness: wraps a streaming design so Verilator runs it at native speed.

Driving a stream from Python costs a callback per cycle.  Instead the harness holds the stimulus in
an on-chip input memory (loaded once through ``load_*``), plays it into the design with random
gaps, takes the design's output with random back-pressure, stores every output beat and a cycle
stamp per frame, and raises ``done`` (or ``stuck``, if nothing moved for ``watchdog`` cycles).  The
testbench then reads the results back through ``rd_*``.  After the last expected output beat the
harness keeps taking output for ``drain`` more cycles and counts any beat that still comes in
``extra_out`` (a design that emits too much must fail, not pass because nobody looked);
``in_count`` tells whether the design took all of the stimulus.

``stimulus_from_file=True`` (fast Verilator builds) makes the input memory the simulation model
``sim/models/squeezehw_stimulus_mem.v`` instead of an Amaranth ``Memory``: it can be filled from a
hex file when the simulation starts (``+in_mem=FILE``), and the Verilog carries no initial value
per stimulus word (for 8 full-size 224x224 frames those were 400,000 lines).

``registered_reset=True`` (fast builds) runs the design in its own clock domain whose reset is a
harness register (set by ``rst`` or ``dut_reset``, one cycle later) instead of those top-level
inputs themselves.  Amaranth writes every register's reset into its next-state logic, so with a
top-level reset Verilator must re-evaluate all of the design's next-state logic whenever it is
called (twice per clock cycle, as an input might have changed); with a registered reset that
logic runs once per rising edge.  For the same reason the harness's logic then sits one level
below a top module that holds only the ports: the Verilator build makes the top module's signals
public (readable and writable from cocotb), and logic that reads a public signal is re-evaluated
on every call as well.  Gaps and stalls come from 16-bit LFSRs:
each cycle a new pause starts with probability ``threshold/256`` and lasts 1..(burst_mask+1) cycles,
so both single-cycle ready pulses and long stalls happen.  ``dut_reset`` resets only the design
(for reset-in-the-middle-of-a-frame tests).
"""

from amaranth import (
    ClockDomain,
    ClockSignal,
    DomainRenamer,
    Instance,
    Module,
    ResetInserter,
    ResetSignal,
    Signal,
    unsigned,
)
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["SimHarness"]


class _PauseGen(wiring.Component):
    """Random pause generator: ``pause`` is high while a random gap/stall is in progress."""
    seed: In(16)
    threshold: In(8)
    burst_mask: In(8)
    load: In(1)
    pause: Out(1)

    def elaborate(self, platform):
        m = Module()
        lfsr = Signal(16, init=1)
        left = Signal(8)
        # Galois LFSR, taps 16,14,13,11 (maximal length)
        nxt = Signal(16)
        m.d.comb += nxt.eq((lfsr >> 1) ^ (lfsr[0].replicate(16) & 0xB400))
        with m.If(self.load):
            m.d.sync += [lfsr.eq(self.seed | 1), left.eq(0)]
        with m.Else():
            m.d.sync += lfsr.eq(nxt)
            with m.If(left != 0):
                m.d.sync += left.eq(left - 1)
            with m.Elif(lfsr[:8] < self.threshold):
                m.d.sync += left.eq((lfsr[8:] & self.burst_mask) + 1)
        m.d.comb += self.pause.eq(left != 0)
        return m


class SimHarness(wiring.Component):
    def __init__(self, dut, *, in_depth: int, out_depth: int, frames_max: int, out_beats_per_frame: int,
                 in_beats_per_frame: int, watchdog: int = 1 << 20, stimulus_from_file: bool = False,
                 registered_reset: bool = False, _core: bool = False):
        self.dut = dut
        self._args = dict(in_depth=in_depth, out_depth=out_depth, frames_max=frames_max,
                          out_beats_per_frame=out_beats_per_frame, in_beats_per_frame=in_beats_per_frame,
                          watchdog=watchdog, stimulus_from_file=stimulus_from_file)
        self._core = _core
        self.stimulus_from_file = stimulus_from_file
        self.registered_reset = registered_reset
        self.in_width = len(dut.i.payload)
        self.out_width = len(dut.o.payload)
        self.in_depth, self.out_depth, self.frames_max = in_depth, out_depth, frames_max
        self.out_beats_per_frame, self.in_beats_per_frame = out_beats_per_frame, in_beats_per_frame
        self.watchdog = watchdog
        addr = max(in_depth, out_depth, frames_max).bit_length()
        super().__init__({
            "load_en": In(1), "load_addr": In(addr), "load_data": In(self.in_width),
            "n_in": In(addr), "n_out": In(addr),
            "gap_seed": In(16), "gap_threshold": In(8), "gap_burst": In(8),
            "stall_seed": In(16), "stall_threshold": In(8), "stall_burst": In(8),
            "start": In(1), "dut_reset": In(1), "drain": In(32),
            "done": Out(1), "stuck": Out(1), "cycles": Out(40), "extra_out": Out(32),
            "in_count": Out(addr), "out_count": Out(addr),
            "rd_addr": In(addr), "rd_data": Out(max(self.out_width, 40)),
            "rd_stamp_addr": In(addr), "rd_in_stamp": Out(40), "rd_out_stamp": Out(40),
            # a design with profiling counters (Accelerator(probes=True)) has them read through here
            **({"probe_sel": In(len(dut.probe_sel)), "probe_data": Out(len(dut.probe_data))}
               if hasattr(dut, "probe_sel") else {}),
        })

    def elaborate(self, platform):
        m = Module()
        if self.registered_reset and not self._core:      # ports only here, the logic one level down
            m.submodules.core = core = SimHarness(self.dut, **self._args, registered_reset=True, _core=True)
            for name, member in self.signature.members.items():
                if member.flow == In:
                    m.d.comb += getattr(core, name).eq(getattr(self, name))
                else:
                    m.d.comb += getattr(self, name).eq(getattr(core, name))
            return m
        if self.registered_reset:
            m.domains.dut = ClockDomain("dut")
            dut_rst = Signal(init=1)
            m.d.sync += dut_rst.eq(self.dut_reset)        # (and 1 while rst holds the harness in reset)
            m.d.comb += [ClockSignal("dut").eq(ClockSignal("sync")), ResetSignal("dut").eq(dut_rst)]
            m.submodules.dut = dut = DomainRenamer({"sync": "dut"})(self.dut)
        else:
            m.submodules.dut = dut = ResetInserter(self.dut_reset)(self.dut)
        if hasattr(self.dut, "probe_sel"):
            m.d.comb += [self.dut.probe_sel.eq(self.probe_sel), self.probe_data.eq(self.dut.probe_data)]
        m.submodules.gap = gap = _PauseGen()
        m.submodules.stall = stall = _PauseGen()
        m.submodules.out_mem = out_mem = Memory(shape=unsigned(self.out_width), depth=self.out_depth, init=[])
        # cycle stamps per frame: when its first input beat went in, when its last output beat came out
        m.submodules.in_stamps = in_stamps = Memory(shape=unsigned(40), depth=self.frames_max, init=[])
        m.submodules.out_stamps = out_stamps = Memory(shape=unsigned(40), depth=self.frames_max, init=[])

        running = Signal()
        cycles = Signal(40)
        idle = Signal(range(self.watchdog + 1))
        in_ptr = Signal.like(self.in_count)
        out_ptr = Signal.like(self.out_count)
        in_beat = Signal(range(self.in_beats_per_frame))
        out_beat = Signal(range(self.out_beats_per_frame))
        in_frame = Signal(range(self.frames_max + 1))
        out_frame = Signal(range(self.frames_max + 1))
        draining = Signal()      # every expected beat is in: watch for more
        drain_left = Signal(32)
        extra = Signal(32)

        m.d.comb += [
            gap.seed.eq(self.gap_seed), gap.threshold.eq(self.gap_threshold),
            gap.burst_mask.eq(self.gap_burst), gap.load.eq(self.start),
            stall.seed.eq(self.stall_seed), stall.threshold.eq(self.stall_threshold),
            stall.burst_mask.eq(self.stall_burst), stall.load.eq(self.start),
            self.cycles.eq(cycles), self.in_count.eq(in_ptr), self.out_count.eq(out_ptr),
        ]

        # the stimulus: written through load_* (or read from a file, see the class comment)
        r_in = self._input_memory(m)

        # input player: the read port runs one beat ahead; a beat stays on the bus until taken
        have = Signal()          # a fetched beat is on dut.i
        held = Signal()          # valid was shown and not yet taken: it must stay up (no gap now)
        fetch = Signal()
        fetch_addr = Signal.like(in_ptr)
        take = Signal()
        m.d.comb += [
            dut.i.payload.eq(r_in.data),
            dut.i.valid.eq(have & running & (~gap.pause | held)),
            take.eq(dut.i.valid & dut.i.ready),
            fetch.eq(running & (fetch_addr < self.n_in) & (~have | take)),
            r_in.addr.eq(fetch_addr), r_in.en.eq(fetch),
        ]
        m.d.sync += held.eq(dut.i.valid & ~dut.i.ready)
        with m.If(fetch):
            m.d.sync += [fetch_addr.eq(fetch_addr + 1), have.eq(1)]
        with m.Elif(take):
            m.d.sync += have.eq(0)

        # output taker
        w_out = out_mem.write_port()
        w_ist = in_stamps.write_port()
        w_ost = out_stamps.write_port()
        got = Signal()
        m.d.comb += [dut.o.ready.eq(running & ~stall.pause), got.eq(dut.o.valid & dut.o.ready),
                     w_out.en.eq(got & ~draining), w_out.addr.eq(out_ptr), w_out.data.eq(dut.o.payload),
                     self.extra_out.eq(extra)]
        with m.If(take):
            m.d.sync += in_ptr.eq(in_ptr + 1)
            with m.If(in_beat == 0):
                m.d.comb += [w_ist.en.eq(1), w_ist.addr.eq(in_frame), w_ist.data.eq(cycles)]
            with m.If(in_beat == self.in_beats_per_frame - 1):
                m.d.sync += [in_beat.eq(0), in_frame.eq(in_frame + 1)]
            with m.Else():
                m.d.sync += in_beat.eq(in_beat + 1)
        with m.If(got & draining):
            m.d.sync += extra.eq(extra + 1)
        with m.Elif(got):
            m.d.sync += out_ptr.eq(out_ptr + 1)
            with m.If(out_beat == self.out_beats_per_frame - 1):
                m.d.sync += [out_beat.eq(0), out_frame.eq(out_frame + 1)]
                m.d.comb += [w_ost.en.eq(1), w_ost.addr.eq(out_frame), w_ost.data.eq(cycles)]
            with m.Else():
                m.d.sync += out_beat.eq(out_beat + 1)

        with m.If(self.start):
            m.d.sync += [running.eq(1), cycles.eq(0), idle.eq(0), in_ptr.eq(0), out_ptr.eq(0),
                         fetch_addr.eq(0), have.eq(0), in_beat.eq(0), out_beat.eq(0),
                         in_frame.eq(0), out_frame.eq(0), self.done.eq(0), self.stuck.eq(0),
                         draining.eq(0), extra.eq(0)]
        with m.Elif(running):
            m.d.sync += cycles.eq(cycles + 1)
            with m.If(draining):
                with m.If(drain_left <= 1):
                    m.d.sync += [self.done.eq(1), running.eq(0)]
                m.d.sync += drain_left.eq(drain_left - 1)
            with m.Elif(take | got):
                m.d.sync += idle.eq(0)
            with m.Elif(idle == self.watchdog):
                m.d.sync += [self.stuck.eq(1), running.eq(0)]
            with m.Else():
                m.d.sync += idle.eq(idle + 1)
            with m.If(got & ~draining & (out_ptr + 1 == self.n_out)):
                with m.If(self.drain == 0):
                    m.d.sync += [self.done.eq(1), running.eq(0)]
                with m.Else():
                    m.d.sync += [draining.eq(1), drain_left.eq(self.drain)]

        # read-back
        r_out = out_mem.read_port(domain="comb")
        r_ist = in_stamps.read_port(domain="comb")
        r_ost = out_stamps.read_port(domain="comb")
        m.d.comb += [r_out.addr.eq(self.rd_addr), self.rd_data.eq(r_out.data),
                     r_ist.addr.eq(self.rd_stamp_addr), self.rd_in_stamp.eq(r_ist.data),
                     r_ost.addr.eq(self.rd_stamp_addr), self.rd_out_stamp.eq(r_ost.data)]
        return m

    def _input_memory(self, m):
        """The stimulus memory's read port (``addr``, ``en``, ``data``); its write port is load_*."""
        if not self.stimulus_from_file:
            m.submodules.in_mem = in_mem = Memory(shape=unsigned(self.in_width), depth=self.in_depth, init=[])
            w_in = in_mem.write_port()
            m.d.comb += [w_in.en.eq(self.load_en), w_in.addr.eq(self.load_addr), w_in.data.eq(self.load_data)]
            return in_mem.read_port(transparent_for=())
        read = _ReadPort(len(self.load_addr), self.in_width)
        m.submodules.in_mem = Instance(
            "squeezehw_stimulus_mem", p_WIDTH=self.in_width, p_DEPTH=self.in_depth, p_ABITS=len(self.load_addr),
            i_clk=ClockSignal(), i_we=self.load_en, i_waddr=self.load_addr, i_wdata=self.load_data,
            i_re=read.en, i_raddr=read.addr, o_rdata=read.data)
        return read


class _ReadPort:
    def __init__(self, abits, width):
        self.addr, self.en, self.data = Signal(abits), Signal(), Signal(width)
