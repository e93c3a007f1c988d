"""MaxPool: streaming KxK/S max-pool with PyTorch's ``ceil_mode=True`` (docs/numerics.md,
golden.maxpool), a dedicated design that takes **one input beat per cycle** (it never waits on
itself), rather than a SlidingWindow + reducer (which would need ``K*K*C/lanes`` cycles per output
pixel, 2.25x slower for 3x3/2).

Separable: max over a window = max over its rows of (max over its columns).

1. Horizontal stage.  For input pixel ``x`` each column window ``ox`` containing it keeps a running
   max per channel beat.  With ``S <= K <= 2S`` a pixel lies in at most two windows, consecutive, so
   two banks (window parity) suffice; each bank is a ``C/lanes``-word rotating shift register that
   rotates on every input beat, so the word of the current beat is always at its head (no
   addressing).  When ``x`` is the window's last column (clipped at ``W-1``: the ceil-mode overhang
   counts as 0, which never wins because inputs are uint8) the window's max leaves as one
   "row-max" beat; at most one window ends per pixel.
2. Vertical stage.  Row-max beats of row ``y`` arrive in ``(ox, beat)`` order.  Each output row
   window ``oy`` containing ``y`` has a FIFO bank (parity of ``oy``) of ``Wo*C/lanes`` words holding
   the running max of its rows so far, in the same order: the window's first row pushes, middle
   rows pop/max/push, its last row pops/max and emits the output beat.  A FIFO needs no address
   logic and reads ahead, so the read-modify-write runs at one beat per cycle.

Throughput: one input beat per cycle (``cycles_per_frame = H*W*C/lanes``), output beats only on
the rows/columns that end a window.  The output is therefore bursty at row granularity: output row
``oy`` (``Wo*C/lanes`` beats) leaves while input row ``min(H-1, oy*S+K-1)`` arrives, and nothing
leaves during the other input rows (about ``S-1`` of them; with ``ceil_mode`` the last two output
rows can end on consecutive input rows, and the first output row needs ``K`` input rows).  A
consumer that runs at the pipeline's average rate (``Ho*Wo*C/lanes`` beats per ``H`` input rows,
taken evenly) falls behind during those rows; ``burst_beats`` is the largest backlog it builds up
(computed row by row over back-to-back frames), about ``Wo*C/lanes * (S-1)/S``.  Those beats must
wait somewhere or the pool stalls its producer (the pipeline's bottleneck, typically): the
accelerator builder puts a FIFO of that depth (plus 2) after every pool.  Latency: 3 cycles from the input beat that completes an output
beat to that beat being valid (the row-max beat crosses a StreamRegister between the stages).  Buffers: horizontal ``2*C*8`` bits, vertical
``2*(Wo*C/lanes + 1)`` words of ``8*lanes`` bits in block RAM (``memory_bits`` counts both).

The horizontal banks are flip-flops for small pools and one memory for large ones (``bank_memory``):
``C/lanes`` words of both banks' ``2*8*lanes`` bits, read at the beat the next input will have and
written back at the beat taken, so a read never meets the same cycle's write while ``C/lanes >= 2``.
Why: as rotating shift registers, ImageNet SqueezeNet's three pools held 13,824 flip-flops fed by
flip-flops, and on the Gowin fabric each such flip-flop takes a LUT position of its own (nextpnr
puts a pass-through LUT in front of it); in memory they take one block RAM per pool.
"""
from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..frontend.ir import pool_out_size
from .errors import FoldingError
from .fifo import StreamFIFO
from .stream_register import StreamRegister

__all__ = ["MaxPool", "burst_beats"]


def _windows(size, kernel, stride, out):
    """Per position p: for banks 0/1, (inside, first, last) of the window of that parity."""
    table = []
    for p in range(size):
        entry = [[0, 0, 0], [0, 0, 0]]
        for o in range(out):
            lo, hi = o * stride, min(size - 1, o * stride + kernel - 1)
            if lo <= p <= hi:
                entry[o % 2] = [1, int(p == lo), int(p == hi)]
        table.append(entry)
    return table



def burst_beats(*, height: int, out_height: int, row_beats: int, kernel: int, stride: int) -> int:
    """Largest backlog, in beats, of a consumer that takes the pool's output at the average rate
    (module docstring): ``row_beats`` output beats per output row.  A plain function so that the
    FIFO sizing pass (squeezehw/plan/fifo_sizing.py) uses the same count before any block exists."""
    from fractions import Fraction
    emitted = [0] * height
    for oy in range(out_height):
        emitted[min(height - 1, oy * stride + kernel - 1)] += row_beats
    rate = Fraction(out_height * row_beats, height)     # beats the consumer takes per input row
    backlog = worst = Fraction(0)
    for r in list(range(height)) * 3:     # three frames: the backlog pattern is periodic
        backlog = max(Fraction(0), backlog + emitted[r] - rate)
        worst = max(worst, backlog)
    return -(-worst.numerator // worst.denominator)

class MaxPool(wiring.Component):
    """Ports: ``i`` (in stream, unsigned(8*lanes)), ``o`` (out stream, unsigned(8*lanes)).

    Attributes: ``out_height``, ``out_width``, ``in_beats_per_frame``, ``out_beats_per_frame``,
    ``cycles_per_frame`` (= in_beats_per_frame at full input rate), ``register_bits`` (horizontal
    banks), ``fifo_bits`` (vertical banks, block RAM), ``memory_bits`` (their sum), ``latency``,
    ``burst_beats`` (output buffering a consumer at the average rate needs, module docstring).
    """

    # auto ``bank_memory``: from this many horizontal bank bits (2*C*8: 64 channels) a block RAM
    # is cheaper than the flip-flops (and no design below it changes)
    BANK_MEMORY_MIN_BITS = 1024

    def __init__(self, *, channels: int, height: int, width: int, lanes: int, kernel: int = 3,
                 stride: int = 2, fifo_output_register: bool = True, bank_memory: bool | None = None):
        for name, v in (("channels", channels), ("height", height), ("width", width),
                        ("lanes", lanes), ("kernel", kernel), ("stride", stride)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise FoldingError(f"MaxPool: {name}={v!r} must be a positive integer")
        if channels % lanes:
            divs = [d for d in range(1, channels + 1) if channels % d == 0]
            raise FoldingError(f"MaxPool: lanes={lanes} does not divide channels={channels}; "
                               f"choose one of {divs}")
        if not stride <= kernel <= 2 * stride:
            raise FoldingError(f"MaxPool: kernel={kernel}, stride={stride} unsupported; this "
                               f"design needs stride <= kernel <= 2*stride (e.g. 3x3/2, 2x2/2)")
        if kernel > height or kernel > width:
            raise FoldingError(f"MaxPool: kernel={kernel} is larger than the {height}x{width} "
                               f"input; pool a larger map or drop the pool")
        self.channels, self.height, self.width, self.lanes = channels, height, width, lanes
        self.kernel, self.stride = kernel, stride
        self.fifo_output_register = fifo_output_register    # the banks' (hw/fifo.py output_register)
        self.out_height = pool_out_size(height, kernel, stride)
        self.out_width = pool_out_size(width, kernel, stride)
        self.beats_per_pixel = B = channels // lanes
        self.in_beats_per_frame = height * width * B
        self.out_beats_per_frame = self.out_height * self.out_width * B
        self.cycles_per_frame = self.in_beats_per_frame
        # beats a consumer at the average rate leaves behind during an output row (module doc)
        self.burst_beats = burst_beats(height=self.height, out_height=self.out_height,
                                       row_beats=self.out_width * self.beats_per_pixel,
                                       kernel=self.kernel, stride=self.stride)
        # +1: a bank must accept a push in the cycle a pop frees a full bank's slot
        self.fifo_depth = self.out_width * B + 1
        bank_bits = 2 * B * 8 * lanes
        if bank_memory is None:
            bank_memory = B >= 2 and bank_bits >= self.BANK_MEMORY_MIN_BITS
        if bank_memory and B < 2:
            raise FoldingError(f"MaxPool: bank_memory needs at least two beats per pixel (channels/lanes = {B}): "
                               f"with one, the read for the next beat is the word written in the same cycle; "
                               f"use fewer lanes or bank_memory=False")
        self.bank_memory = bool(bank_memory)
        self.register_bits = (0 if bank_memory else bank_bits) + StreamRegister.bits(8 * lanes)
        self.fifo_bits = 2 * self.fifo_depth * 8 * lanes
        self.memory_bits = self.register_bits + self.fifo_bits
        self.latency = 2 + StreamRegister.LATENCY     # the stages, then the StreamRegister between them
        sig = stream.Signature(8 * lanes)
        super().__init__({"i": In(sig), "o": Out(sig)})

    def elaborate(self, platform):
        m = Module()
        L, B, H, W = self.lanes, self.beats_per_pixel, self.height, self.width
        K, S, Ho, Wo = self.kernel, self.stride, self.out_height, self.out_width

        def lane_max(a, b):
            return Cat(*(Mux(a[8 * k:8 * k + 8] > b[8 * k:8 * k + 8], a[8 * k:8 * k + 8],
                             b[8 * k:8 * k + 8]) for k in range(L)))

        def lookup(index, table, name, domain="comb", init=None):
            """Constant table (per position, per bank: inside/first/last) -> signals (``domain``
            "sync": registers loaded with the entry of ``index``, starting at ``init``'s entry)."""
            sig = [[Signal(name=f"{name}{j}_{f}", init=0 if init is None else init[j][k])
                    for k, f in enumerate(("in", "first", "last"))] for j in (0, 1)]
            with m.Switch(index):
                for p, entry in enumerate(table):
                    with m.Case(p):
                        m.d[domain] += [sig[j][f].eq(entry[j][f]) for j in (0, 1) for f in range(3)]
            return sig

        # ---- output register --------------------------------------------------------------------
        ov = Signal()
        odata = Signal(8 * L, reset_less=True)
        m.d.comb += [self.o.valid.eq(ov), self.o.payload.eq(odata)]
        ofree = Signal()
        m.d.comb += ofree.eq(~ov | self.o.ready)

        # ---- horizontal stage: input -> row-max register (hv, hdata) ------------------------------
        x = Signal(range(W))
        hb = Signal(range(B))
        hv = Signal()
        hdata = Signal(8 * L, reset_less=True)
        hcol = lookup(x, _windows(W, K, S, Wo), "hcol")
        # row-max beats reach the vertical stage through a skid buffer: the vertical stage's
        # decision (bank FIFO levels, output register) then no longer ripples combinationally into
        # this stage's ready and the clock enable of its banks (that chain set the ULX3S Fmax at
        # 76.75 MHz once the multipliers had their DSP registers)
        hreg = m.submodules.hreg = StreamRegister(width=8 * L)
        v_take = Signal()     # the skid buffer takes the row-max register this cycle
        m.d.comb += [hreg.i.valid.eq(hv), hreg.i.payload.eq(hdata), v_take.eq(hv & hreg.i.ready)]
        m.d.comb += self.i.ready.eq(~hv | v_take)
        accept = self.i.valid & self.i.ready
        val = self.i.payload
        kept = []           # per bank, the word the taken beat leaves for its beat index
        if self.bank_memory:
            bank_mem = m.submodules.hbanks = Memory(shape=unsigned(16 * L), depth=B, init=[])
            rp, wp = bank_mem.read_port(), bank_mem.write_port()
            # the port holds the word of the beat the next input will have: hb's next value
            m.d.comb += [rp.addr.eq(Mux(accept, Mux(hb == B - 1, 0, hb + 1), hb)),
                         wp.addr.eq(hb), wp.en.eq(accept)]
            heads = [rp.data[:8 * L], rp.data[8 * L:]]
        else:
            banks = [[Signal(8 * L, name=f"hbank{j}_{n}", reset_less=True) for n in range(B)] for j in (0, 1)]
            heads = [banks[0][0], banks[1][0]]
        with m.If(v_take):
            m.d.sync += hv.eq(0)
        with m.If(accept):
            emit_h = Signal()
            m.d.comb += emit_h.eq(hcol[0][2] | hcol[1][2])
            for j in (0, 1):
                inside, first, last = hcol[j]
                new = Mux(first, val, lane_max(heads[j], val))
                kept.append(Mux(inside, new, heads[j]))
                with m.If(last):
                    m.d.sync += hdata.eq(new)
            if not self.bank_memory:
                # rotate: the next beat's word comes to the head
                for j in (0, 1):
                    m.d.sync += [banks[j][n].eq(banks[j][n + 1]) for n in range(B - 1)]
                    m.d.sync += banks[j][B - 1].eq(kept[j])
            m.d.sync += hv.eq(emit_h)
            if self.bank_memory:
                m.d.comb += wp.data.eq(Cat(*kept))
            with m.If(hb == B - 1):
                m.d.sync += [hb.eq(0), x.eq(Mux(x == W - 1, 0, x + 1))]
            with m.Else():
                m.d.sync += hb.eq(hb + 1)

        # ---- vertical stage: row-max beats -> output register -------------------------------------
        y = Signal(range(H))
        vox = Signal(range(Wo * B))   # position within the row-max row (ox, beat)
        # the table entry of row y is a register loaded with the next row's entry as y steps:
        # y -> table -> the vertical stage's decision -> bank FIFO write enable was the ULX3S
        # critical path at 96 MHz
        y_next = Signal.like(y)
        m.d.comb += y_next.eq(Mux(y == H - 1, 0, y + 1))
        vtable = _windows(H, K, S, Ho)
        y_step = Signal()
        with m.If(y_step):
            vrow = lookup(y_next, vtable, "vrow", domain="sync", init=vtable[0])
        # The banks are StreamFIFOs: their block-RAM output is registered before the lane maxima
        # (ECP5 block RAM is slow to its output; this path set the ULX3S Fmax at 76 MHz).
        fifos = []
        for j in (0, 1):
            f = StreamFIFO(width=8 * L, depth=self.fifo_depth, output_register=self.fifo_output_register)
            m.submodules[f"vbank{j}"] = f
            fifos.append(f)
        # every bank this beat pops must have its head, an emit needs ofree.  A push always fits:
        # a bank holds the running maxima of one output row window at a time (the windows of one
        # parity share no input row since K <= 2S), at most Wo*B beats, and it has room for
        # fifo_depth + 2 (a lost push would corrupt an output row: tests/hw/test_maxpool.py
        # compares with the golden model under output back-pressure).  Not waiting on the FIFO's ready keeps
        # its level compare off the decision (level -> ready -> decision -> level was the ULX3S
        # critical path at 97 MHz).
        ok = Signal()
        rdata = hreg.o.payload
        conds = [hreg.o.valid]
        for j, f in enumerate(fifos):
            inside, first, last = vrow[j]
            conds.append(~(inside & ~first) | f.o.valid)
        emit_v = vrow[0][2] | vrow[1][2]
        conds.append(~emit_v | ofree)
        m.d.comb += [ok.eq(Cat(*conds).all()), hreg.o.ready.eq(ok)]
        for j, f in enumerate(fifos):
            inside, first, last = vrow[j]
            new = Mux(first, rdata, lane_max(f.o.payload, rdata))
            m.d.comb += [
                f.o.ready.eq(ok & inside & ~first),
                f.i.valid.eq(ok & inside & ~last),
                f.i.payload.eq(new),
            ]
            with m.If(ok & inside & last):
                m.d.sync += odata.eq(new)
        with m.If(ofree):
            m.d.sync += ov.eq(ok & emit_v)
        with m.If(ok):
            with m.If(vox == Wo * B - 1):
                m.d.sync += [vox.eq(0), y.eq(y_next)]
                m.d.comb += y_step.eq(1)
            with m.Else():
                m.d.sync += vox.eq(vox + 1)
        return m
