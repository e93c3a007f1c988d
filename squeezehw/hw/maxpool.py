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
   window ``oy`` containing ``y`` has a FIFO bank of ``Wo*C/lanes`` words holding the running max of
   its rows so far, in the same order: the window's first row pushes, middle and last rows
   pop/max/push.  A FIFO needs no address logic and reads ahead, so the read-modify-write runs at
   one beat per cycle.
3. Emission.  After its last row a window's bank holds its output row, and the emitter pops it
   into the output register while the other bank takes the next window: the bank is the pool's
   output buffer.  Windows alternate banks (``oy % 2``, swapped every other frame when ``Ho`` is
   odd), so a bank has the next two input rows to empty before the next window there pops it.

Throughput: one input beat per cycle (``cycles_per_frame = H*W*C/lanes``).  An output row
(``Wo*C/lanes`` beats) is complete at the end of input row ``min(H-1, oy*S+K-1)`` and leaves as fast
as the consumer takes it; a consumer at the pipeline's average rate (``Ho*Wo*C/lanes`` beats per ``H``
input rows) has about two input rows for it (tests/hw/test_maxpool.py runs one a beat every
``floor(in/out)`` cycles: the input is never refused from 9x9 maps up, in about 1 % of the cycles on
a 7x7 map, where 3 output rows share 7 input rows).  So no FIFO of an output row
follows the pool, as one did while the pool emitted each row during its last input row (ImageNet
SqueezeNet: 11 Tang Mega BSRAMs).  Latency: an output row has left at most ``latency`` = its
``Wo*C/lanes`` beats + 5 cycles after the input beat that ends its last input row (the row-max beat
crosses a StreamRegister between the stages, the bank FIFO reads through its output register).
Buffers: horizontal ``2*C*8`` bits, vertical ``2*(Wo*C/lanes + 1)`` words of ``8*lanes`` bits in block
RAM (``memory_bits`` counts both).

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

__all__ = ["MaxPool"]


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



class MaxPool(wiring.Component):
    """Ports: ``i`` (in stream, unsigned(8*lanes)), ``o`` (out stream, unsigned(8*lanes)).

    Attributes: ``out_height``, ``out_width``, ``in_beats_per_frame``, ``out_beats_per_frame``,
    ``cycles_per_frame`` (= in_beats_per_frame at full input rate), ``register_bits`` (horizontal
    banks), ``fifo_bits`` (vertical banks, block RAM), ``memory_bits`` (their sum), ``latency``
    (module docstring).
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
        # a window's running maxima, +1 so a push fits in the cycle a pop frees a full bank's slot
        # (the previous window's output row shares the room while it leaves: pushes wait on it)
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
        # at most, from the beat that ends an output row's last input row to that row's last output
        # beat with a ready consumer: the row's beats after the stages, the StreamRegister, the
        # row-end flag and the bank FIFO's read (tests/hw/test_maxpool.py measures it)
        self.latency = self.out_width * B + 4 + StreamRegister.LATENCY
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
            if self.bank_memory:
                m.d.comb += wp.data.eq(Cat(*kept))
            else:
                # rotate: the next beat's word comes to the head
                for j in (0, 1):
                    m.d.sync += [banks[j][n].eq(banks[j][n + 1]) for n in range(B - 1)]
                    m.d.sync += banks[j][B - 1].eq(kept[j])
            m.d.sync += hv.eq(emit_h)
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
        # A window's last row leaves its final maxima in its bank (pop, max, push, as a middle row
        # does), and the emitter pops them from there into the output register afterwards, while the
        # other bank takes the next window: the bank is the output buffer, so the pool needs no FIFO
        # of an output row after it (a block RAM saved per pool).  Windows alternate banks: window
        # ``oy`` uses bank ``oy % 2``, swapped every other frame when ``Ho`` is odd (``swap``), so
        # that a bank always has two input rows to emit a window before the next one there pops it.
        # A bank pops its running maxima (middle and last rows) only once its previous window has
        # left (``pend``); its pushes wait on the FIFO's room (they share it with that window's
        # finals); every bank this beat pops must have its head.
        swap = Signal()
        pend = [Signal(name=f"pend{b}") for b in (0, 1)]     # bank b holds a finished window
        eturn = Signal()                                     # the bank of the next window to emit
        ecount = Signal(range(Wo * B))                       # beats of it emitted so far
        ok = Signal()
        rdata = hreg.o.payload
        flags = [[Mux(swap, vrow[1 - b][f], vrow[b][f]) for f in range(3)] for b in (0, 1)]
        conds = [hreg.o.valid]
        for b, f in enumerate(fifos):
            inside, first, last = flags[b]
            conds.append(~(inside & ~first) | (f.o.valid & ~pend[b]))
            conds.append(~(inside & last) | ~pend[b])
            conds.append(~inside | f.i.ready)
        m.d.comb += [ok.eq(Cat(*conds).all()), hreg.o.ready.eq(ok)]
        # the emitter: the finished window of bank eturn, beat by beat, into the output register
        epop = Signal()
        m.d.comb += epop.eq(Mux(eturn, pend[1] & fifos[1].o.valid, pend[0] & fifos[0].o.valid) & ofree)
        row_end = ok & (vox == Wo * B - 1)
        for b, f in enumerate(fifos):
            inside, first, last = flags[b]
            new = Mux(first, rdata, lane_max(f.o.payload, rdata))
            m.d.comb += [
                f.o.ready.eq((ok & inside & ~first) | (epop & (eturn == b))),
                f.i.valid.eq(ok & inside),
                f.i.payload.eq(new),
            ]
            with m.If(row_end & inside & last):
                m.d.sync += pend[b].eq(1)
            with m.If(epop & (eturn == b) & (ecount == Wo * B - 1)):
                m.d.sync += pend[b].eq(0)
        with m.If(epop):
            m.d.sync += odata.eq(Mux(eturn, fifos[1].o.payload, fifos[0].o.payload))
            with m.If(ecount == Wo * B - 1):
                m.d.sync += [ecount.eq(0), eturn.eq(~eturn)]
            with m.Else():
                m.d.sync += ecount.eq(ecount + 1)
        with m.If(ofree):
            m.d.sync += ov.eq(epop)
        if Ho % 2:
            with m.If(row_end & (y == H - 1)):
                m.d.sync += swap.eq(~swap)
        with m.If(ok):
            with m.If(vox == Wo * B - 1):
                m.d.sync += [vox.eq(0), y.eq(y_next)]
                m.d.comb += y_step.eq(1)
            with m.Else():
                m.d.sync += vox.eq(vox + 1)
        return m
