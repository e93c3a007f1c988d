"""SlidingWindow: the line-buffer unit in front of a KxK conv's MVU (and of window-based pooling).

Input: one feature map after another in raster order, ``channels / lanes`` beats per pixel.
Output: for each output pixel ``(oy, ox)`` in raster order, the ``K*K*channels`` window values in
``(ky, kx, c)`` order, ``channels / lanes`` beats per kernel tap, where tap ``(ky, kx)`` carries
``in[c, oy*S - P + ky, ox*S - P + kx]`` or 0 outside the input (zero padding, and the bottom/right
overhang of ceil-mode pooling when ``out_height``/``out_width`` exceed the conv formula).

Buffering: a circular line buffer of ``rows`` full input rows (``width * channels / lanes`` words
of ``8 * lanes`` bits each) in one ``amaranth.lib.memory.Memory`` with a synchronous read port
(block RAM).  ``rows = kernel + stride + extra`` where ``extra = max(0, height - out_height*stride)``
covers trailing input rows that no window uses:

- ``kernel`` rows hold the current output row's windows;
- ``stride`` more rows let the writer fill the next output row's new rows while the reader is
  still busy with the current one, so the reader never waits at a row change;
- ``extra`` lets the writer get past the unused trailing rows into the next frame's first rows
  while the reader finishes a frame, so back-to-back frames have no bubble either.

Flow control (correct under any traffic, checked at row/pixel granularity):

- the reader starts a beat of output pixel ``(oy, ox)`` only once the writer has completed input
  pixel ``(min(H-1, oy*S-P+K-1), min(W-1, ox*S-P+K-1))`` of that frame (or a later frame);
- the writer writes input row ``wy`` (global row count, across frames) only while that row's slot
  no longer holds a row the reader still needs: ``wy < lo + rows`` where ``lo`` is the first input
  row of the reader's current output row (``max(0, oy*S - P)``).

Throughput: one output beat per cycle whenever the input keeps up (a window unit outputs
``K*K/S**2`` times more beats than it takes, so the reader is the bottleneck and the input stalls).
``cycles_per_frame = max(out_beats_per_frame, in_beats_per_frame)`` in steady state.
Latency: an output beat is valid 2 cycles after the reader issues its read (the line buffer's
synchronous read, then a StreamRegister: block RAM is slow to its output on ECP5).
"""
from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .errors import FoldingError
from .stream_register import StreamRegister

__all__ = ["SlidingWindow"]


def _check_int(name, v, lo):
    if not isinstance(v, int) or isinstance(v, bool) or v < lo:
        raise FoldingError(f"SlidingWindow: {name}={v!r} must be an integer >= {lo}")


class SlidingWindow(wiring.Component):
    """Ports: ``i`` (in stream, unsigned(8*lanes)), ``o`` (out stream, unsigned(8*lanes)).

    Attributes: ``out_height``, ``out_width``, ``rows`` (line-buffer rows), ``memory_bits``,
    ``in_beats_per_frame``, ``out_beats_per_frame``, ``cycles_per_frame`` (steady state, full
    input rate), ``input_skew_pixels`` (0: output pixel ``(oy, ox)`` needs no input beyond pixel
    ``(oy*S-P+K-1, ox*S-P+K-1)``, clamped into the input), ``max_input_lead_rows`` (how many input
    rows the writer may run ahead of the first row of the current output row: ``rows``).

    ``timing_registers`` (default True): the reader's and writer's event flags and the wrapped
    slot bases, which the ULX3S 100 MHz work registers a step ahead (see ``elaborate``).  False
    computes them with plain compares and adders instead, as before that work (the read address is
    still loaded from its candidates): the same cycle behaviour with fewer logic cells, for iCE40
    builds (``squeezehw.plan.lowering.Target.timing_registers``), whose clock does not need them.
    """

    def __init__(self, *, channels: int, height: int, width: int, kernel: int, stride: int,
                 padding: int, lanes: int, out_height: int | None = None,
                 out_width: int | None = None, timing_registers: bool = True):
        for name, v, lo in (("channels", channels, 1), ("height", height, 1), ("width", width, 1),
                            ("kernel", kernel, 1), ("stride", stride, 1), ("padding", padding, 0),
                            ("lanes", lanes, 1)):
            _check_int(name, v, lo)
        if channels % lanes:
            divs = [d for d in range(1, channels + 1) if channels % d == 0]
            raise FoldingError(f"SlidingWindow: lanes={lanes} does not divide channels={channels}; "
                               f"choose one of {divs}")
        if padding >= kernel:
            raise FoldingError(f"SlidingWindow: padding={padding} must be smaller than "
                               f"kernel={kernel}")
        conv_h = (height + 2 * padding - kernel) // stride + 1
        conv_w = (width + 2 * padding - kernel) // stride + 1
        if conv_h < 1 or conv_w < 1:
            raise FoldingError(f"SlidingWindow: a {kernel}x{kernel} window with padding={padding} "
                               f"does not fit a {height}x{width} input; use a smaller kernel or "
                               f"more padding")
        out_height = conv_h if out_height is None else out_height
        out_width = conv_w if out_width is None else out_width
        for name, v, conv, size in (("out_height", out_height, conv_h, height),
                                    ("out_width", out_width, conv_w, width)):
            _check_int(name, v, 1)
            # every window must start inside the input (PyTorch's ceil-mode rule)
            if (v - 1) * stride - padding > size - 1:
                raise FoldingError(f"SlidingWindow: {name}={v} puts the last window outside the "
                                   f"input of size {size}; use at most {conv} (conv) or the "
                                   f"ceil-mode size")
        self.channels, self.height, self.width = channels, height, width
        self.kernel, self.stride, self.padding, self.lanes = kernel, stride, padding, lanes
        self.out_height, self.out_width = out_height, out_width
        self.timing_registers = bool(timing_registers)
        self.beats_per_pixel = channels // lanes
        self.rows = kernel + stride + max(0, height - out_height * stride)
        self.depth = self.rows * width * self.beats_per_pixel
        self.memory_bits = self.depth * 8 * lanes
        self.in_beats_per_frame = height * width * self.beats_per_pixel
        self.out_beats_per_frame = out_height * out_width * kernel * kernel * self.beats_per_pixel
        self.cycles_per_frame = max(self.in_beats_per_frame, self.out_beats_per_frame)
        self.input_skew_pixels = 0
        self.max_input_lead_rows = self.rows
        self.latency = 2
        sig = stream.Signature(8 * lanes)
        super().__init__({"i": In(sig), "o": Out(sig)})

    def elaborate(self, platform):
        m = Module()
        C, H, W, K, S, P = (self.channels, self.height, self.width, self.kernel, self.stride,
                            self.padding)
        B, R, Ho, Wo = self.beats_per_pixel, self.rows, self.out_height, self.out_width
        WB = W * B
        m.submodules.mem = mem = Memory(shape=8 * self.lanes, depth=self.depth, init=[])
        wp = mem.write_port()
        rp = mem.read_port(domain="sync")  # not transparent: a read never sees a same-cycle write

        # Frames the writer has completed beyond the reader's frame.  The writer can be at most
        # (H + R - 2) // H frames ahead by the row rule, plus the frame it is finishing.  It is -1
        # when the reader has finished a frame whose trailing rows/columns no window uses while the
        # writer is still writing them (e.g. 3x3/2 on an even size, or kernel < stride).
        max_lead = (H + R - 2) // H + 1
        lead = Signal(range(-1, max_lead + 1))
        lead_inc = Signal()
        lead_dec = Signal()

        # ---- writer -------------------------------------------------------------------------
        wb = Signal(range(B))
        wx = Signal(range(W))
        wy = Signal(range(H))
        wpix = Signal(range(H * W + 1))      # pixels of the writer's frame completed
        px_done = Signal()                   # the writer completes a pixel this cycle
        frame_done = Signal()                # ... and the frame (wpix returns to 0)
        waddr = Signal(range(self.depth))     # slots are consecutive mod R: one wrapping counter

        # ---- reader counters --------------------------------------------------------------------
        b = Signal(range(B))
        kx = Signal(range(K))
        ky = Signal(range(K))
        ox = Signal(range(Wo))
        oy = Signal(range(Ho))
        iy0 = Signal(range(-P, (Ho - 1) * S - P + 1), init=-P)   # oy*S - P
        ix0 = Signal(range(-P, (Wo - 1) * S - P + 1), init=-P)   # ox*S - P
        iy = Signal(range(-P, (Ho - 1) * S - P + K), init=-P)    # iy0 + ky
        ix = Signal(range(-P, (Wo - 1) * S - P + K), init=-P)    # ix0 + kx
        ix0b = Signal(range(-P * B, (Wo - 1) * S * B - P * B + 1), init=-P * B)  # ix0*B
        # Slot base addresses (slot * W*B, kept premultiplied so the read address is one adder).
        # Row 0 of frame 0 is slot 0, so row -P is slot -P mod R.
        fslot = Signal(range(self.depth))                       # row 0 of the reader's frame
        rbase = Signal(range(self.depth), init=((-P) % R) * WB)  # row iy0 (also padding rows)
        kslot = Signal(range(self.depth), init=((-P) % R) * WB)  # row iy

        # The writer may write global input row ``wy + lead*H`` only while it is below
        # ``lo + R``, where ``lo = max(0, iy0)`` is the first input row the reader still needs.
        # ``ahead`` = (wy + lead*H) - lo is kept as a running count (no multiplier or wide
        # compare on the ready path; it was the ECP5 critical path): +1 when the writer
        # completes a row, -(lo's step) when the reader moves to its next output row, and
        # lo_last - H when it finishes a frame (lead drops by one and lo returns to 0).
        lo_last = max(0, (Ho - 1) * S - P)
        ahead = Signal(range(-(H + R) - 1, H + 2 * R + 2))
        ahead_up = Signal()
        # The reader subtracts lo's step when it moves to its next output row (row_down: a
        # register, as it only depends on iy0) and H - lo_last when it finishes a frame.  ahead's next value and can_write = (ahead < R) are both computed for
        # every case from registers in parallel; the late signals (this cycle's issue decision
        # and the input's valid) only select one: so the input's ready is a flip-flop, and no
        # adder or compare waits on the issue logic (ahead < R -> ready -> the producer, then
        # issue -> ahead_down -> subtract -> compare were ULX3S critical paths).
        row_ev, frame_ev = Signal(), Signal()     # the reader moves to the next row / frame
        def lo_step(iy0_value):   # lo = max(0, iy0) steps to max(0, iy0 + S)
            return Mux(iy0_value + S <= 0, 0, Mux(iy0_value < 0, iy0_value + S, S))

        row_down = Signal(range(S + 1), init=0 if S - P <= 0 else (S - P if P > 0 else S))  # lo_step(-P)

        can_write = Signal(init=1)            # ahead starts at 0 < R
        cases = [ahead, ahead - row_down, ahead - (H - lo_last)]
        nexts = [Signal.like(ahead, name=f"ahead_next{k}") for k in range(6)]
        fits = [Signal(name=f"can_write_next{k}") for k in range(6)]
        for k, c in enumerate(cases):
            m.d.comb += [nexts[2 * k].eq(c), nexts[2 * k + 1].eq(c + 1),
                         fits[2 * k].eq(c < R), fits[2 * k + 1].eq(c < R - 1)]
        sel = Cat(ahead_up, Mux(frame_ev, 2, Mux(row_ev, 1, 0)))
        m.d.sync += [ahead.eq(Array(nexts)[sel]), can_write.eq(Cat(*fits).bit_select(sel, 1))]
        m.d.comb += [
            self.i.ready.eq(can_write),
            wp.addr.eq(waddr),
            wp.data.eq(self.i.payload),
            wp.en.eq(self.i.valid & can_write),
        ]
        m.d.sync += wpix.eq(Mux(frame_done, 0, wpix + px_done))
        # The writer's pixel/row/frame completions come from flags registered a beat ahead (last
        # beat of a pixel, last pixel of a row, last row), like the reader's events below, so the
        # producer's valid reaches the `ahead` select through one gate (upstream valid -> wb/wx
        # compares -> row completion -> ahead select was the ULX3S seed-3 critical path at 97.62 MHz).
        write = Signal()
        if self.timing_registers:
            w_px_end = Signal(init=B == 1)
            w_last_col = Signal(init=W == 1)
            w_last_row = Signal(init=H == 1)
            with m.If(write):
                m.d.sync += w_px_end.eq(Mux(w_px_end, B == 1, wb == B - 2))
            with m.If(px_done):
                m.d.sync += w_last_col.eq(Mux(w_last_col, W == 1, wx == W - 2))
            with m.If(ahead_up):
                m.d.sync += w_last_row.eq(Mux(w_last_row, H == 1, wy == H - 2))
        else:
            w_px_end, w_last_col, w_last_row = wb == B - 1, wx == W - 1, wy == H - 1
        m.d.comb += [
            write.eq(self.i.valid & can_write),
            px_done.eq(write & w_px_end),
            ahead_up.eq(px_done & w_last_col),
            frame_done.eq(ahead_up & w_last_row),
            lead_inc.eq(frame_done),
        ]
        with m.If(write):
            m.d.sync += waddr.eq(Mux(waddr == self.depth - 1, 0, waddr + 1))
            with m.If(wb == B - 1):
                m.d.sync += wb.eq(0)
                with m.If(wx == W - 1):
                    m.d.sync += wx.eq(0)
                    with m.If(wy == H - 1):
                        m.d.sync += wy.eq(0)
                    with m.Else():
                        m.d.sync += wy.eq(wy + 1)
                with m.Else():
                    m.d.sync += wx.eq(wx + 1)
            with m.Else():
                m.d.sync += wb.eq(wb + 1)

        # ---- reader -----------------------------------------------------------------------------
        # Output pixel (oy, ox) needs input pixel (ry, rx) = (min(H-1, iy0+K-1), min(W-1, ix0+K-1))
        # of its frame.  need = ry*W + rx is a register advanced with the counters (running sums
        # instead of a constant multiply on the issue path).
        col0 = min(W - 1, K - 1 - P)
        row0 = min(H - 1, K - 1 - P) * W
        need_col = Signal(range(W), init=col0)
        need_row = Signal(range(H * W), init=row0)
        need = Signal(range(H * W), init=row0 + col0)
        need_step = Signal(2)              # need's next value: 0 need, 1 the next pixel's, 2 the next row's, 3 row0+col0
        col_step = Mux(need_col + S > W - 1, W - 1, need_col + S)
        row_step = Mux(need_row + S * W > (H - 1) * W, (H - 1) * W, need_row + S * W)
        if K * K * B >= 2:
            # the next pixel's / row's values are registered a cycle after need_col / need_row
            # change (a pixel step is K*K*B >= 2 issues away), so the step itself is a plain load:
            # need_row -> compare -> add -> need was the ULX3S critical path at 93 MHz
            next_col = Signal(range(W), init=min(W - 1, col0 + S))
            next_row = Signal(range(H * W), init=min((H - 1) * W, row0 + S * W))
            need_next_col = Signal(range(H * W), init=row0 + min(W - 1, col0 + S))
            need_next_row = Signal(range(H * W), init=min((H - 1) * W, row0 + S * W) + col0)
            m.d.sync += [next_col.eq(col_step), next_row.eq(row_step),
                         need_next_col.eq(need_row + col_step), need_next_row.eq(row_step + col0)]
        else:
            next_col, next_row = col_step, row_step
            need_next_col, need_next_row = need_row + col_step, row_step + col0
        need_candidates = [need, need_next_col, need_next_row, Const(row0 + col0, need.shape())]
        m.d.sync += need.eq(Array(need_candidates)[need_step])
        # `available` is a register computed from the next lead / wpix / need, so the issue
        # decision (and the clock enables of every reader counter) does not wait on the wide
        # wpix > need compare (that was the ULX3S critical path at 94.6 MHz)
        available = Signal()
        lead_d = Signal.like(lead)

        # the read port's data (plus the padding mux) is registered before it leaves the block
        m.submodules.out = out = StreamRegister(width=8 * self.lanes)
        wiring.connect(m, out.o, wiring.flipped(self.o))
        # The read address is a register loaded, on each issue, with one of a few candidates
        # computed in parallel from registers: the next tap (+1), the next kernel row, the next
        # pixel, row or frame; the counters only select (kslot -> slot add -> wrap compare ->
        # subtract -> read-address adder was the ULX3S critical path at 95 MHz).  The wrapped
        # slot bases the steps move to (kslot + W*B, rbase + S*W*B, the next frame's) are
        # registers computed a cycle after their operands change: a kernel-row step comes at
        # least K*B >= 2 issues after kslot last changed, a row or frame step later still.  With
        # K*B == 1 (no kernel rows), or without timing registers, they stay combinational.
        lag = self.timing_registers and K * B >= 2

        def mod_r(v):  # a slot base advanced by less than R slots, wrapped into the buffer
            return Mux(v >= self.depth, v - self.depth, v)

        def lagged(name, expr, init):
            if not lag:
                return expr
            r = Signal(range(self.depth), name=name, init=init % self.depth)
            m.d.sync += r.eq(expr)
            return r

        kslot_up = lagged("kslot_up", mod_r(kslot + WB), kslot.init + WB)               # row iy + 1
        rbase_up = lagged("rbase_up", mod_r(rbase + (S % R) * WB), rbase.init + (S % R) * WB)
        fslot_up = lagged("fslot_up", mod_r(fslot + (H % R) * WB), (H % R) * WB)       # next frame
        fbase_up = lagged("fbase_up", mod_r(fslot + ((H - P) % R) * WB), ((H - P) % R) * WB)
        raddr = Signal(len(rp.addr), init=(kslot.init - P * B) % (1 << len(rp.addr)))

        ovalid = Signal()       # the read port holds a beat
        ozero = Signal()        # ... and it is padding
        issue = Signal()
        inside = Signal()
        m.d.comb += [
            inside.eq((iy >= 0) & (iy < H) & (ix >= 0) & (ix < W)),
            issue.eq(available & (~ovalid | out.i.ready)),
            rp.en.eq(issue),
            rp.addr.eq(raddr),
            out.i.valid.eq(ovalid),
            out.i.payload.eq(Mux(ozero, 0, rp.data)),
        ]

        with m.If(~ovalid | out.i.ready):
            m.d.sync += ovalid.eq(issue)
        with m.If(issue):
            m.d.sync += ozero.eq(~inside)
            with m.If(b != B - 1):
                m.d.sync += [b.eq(b + 1), raddr.eq(raddr + 1)]
            with m.Else():
                m.d.sync += b.eq(0)
                with m.If(kx != K - 1):
                    m.d.sync += [kx.eq(kx + 1), ix.eq(ix + 1), raddr.eq(raddr + 1)]
                with m.Else():
                    m.d.sync += kx.eq(0)
                    with m.If(ky != K - 1):
                        m.d.sync += [ky.eq(ky + 1), iy.eq(iy + 1), ix.eq(ix0), kslot.eq(kslot_up),
                                     raddr.eq(kslot_up + ix0b)]
                    with m.Else():
                        m.d.sync += ky.eq(0)
                        with m.If(ox != Wo - 1):   # next pixel of this output row
                            m.d.sync += [ox.eq(ox + 1), ix0.eq(ix0 + S), ix.eq(ix0 + S), iy.eq(iy0),
                                         need_col.eq(next_col), ix0b.eq(ix0b + S * B),
                                         kslot.eq(rbase), raddr.eq(rbase + ix0b + S * B)]
                        with m.Else():
                            m.d.sync += [ox.eq(0), ix0.eq(-P), ix.eq(-P), need_col.eq(col0),
                                         ix0b.eq(-P * B)]
                            with m.If(oy != Ho - 1):   # next output row
                                m.d.sync += [oy.eq(oy + 1), iy0.eq(iy0 + S), iy.eq(iy0 + S),
                                             rbase.eq(rbase_up), need_row.eq(next_row),
                                             kslot.eq(rbase_up), raddr.eq(rbase_up - P * B)]
                                m.d.sync += row_down.eq(lo_step(iy0 + S))
                            with m.Else():             # next frame
                                m.d.sync += [oy.eq(0), iy0.eq(-P), iy.eq(-P), fslot.eq(fslot_up),
                                             rbase.eq(fbase_up), need_row.eq(row0),
                                             kslot.eq(fbase_up), raddr.eq(fbase_up - P * B)]
                                m.d.sync += row_down.eq(lo_step(-P))

        # The reader's pixel/row/frame events come from flags registered a step ahead (the last
        # tap of a pixel, the last pixel of a row, the last row of a frame), so the issue decision
        # reaches the `ahead`/`need` selects through one gate instead of the counters' compares
        # (ox -> ox == Wo-1 -> row event -> ahead select was the ULX3S seed-1 critical path at
        # 94.16 MHz).  They step with the counters of the if-tree above.  Without timing registers
        # they are the counters' compares.
        pix_ev = Signal()
        if self.timing_registers:
            taps = K * K * B
            taps_left = Signal(range(taps), init=taps - 1)
            pix_end = Signal(init=taps == 1)
            last_px = Signal(init=Wo == 1)
            last_row = Signal(init=Ho == 1)
            with m.If(issue):
                m.d.sync += [taps_left.eq(Mux(pix_end, taps - 1, taps_left - 1)),
                             pix_end.eq(Mux(pix_end, taps == 1, taps_left == 1))]
            with m.If(pix_ev):
                m.d.sync += last_px.eq(Mux(last_px, Wo == 1, ox == Wo - 2))
                with m.If(last_px):
                    m.d.sync += last_row.eq(Mux(last_row, Ho == 1, oy == Ho - 2))
        else:
            pix_end = (b == B - 1) & (kx == K - 1) & (ky == K - 1)
            last_px, last_row = ox == Wo - 1, oy == Ho - 1
        m.d.comb += [
            pix_ev.eq(issue & pix_end),
            row_ev.eq(pix_ev & last_px & ~last_row),
            frame_ev.eq(pix_ev & last_px & last_row),
            lead_dec.eq(frame_ev),
            need_step.eq(Mux(pix_ev, Mux(last_px, Mux(last_row, 3, 2), 1), 0)),
        ]

        # next wpix > next need without an adder in front of the compare: wpix against each
        # candidate for need's next value (registers or a constant) in parallel, the step selects one
        gt = Cat(*(wpix > c for c in need_candidates)).bit_select(need_step, 1)
        eq = Cat(*(wpix == c for c in need_candidates)).bit_select(need_step, 1)
        m.d.comb += lead_d.eq(lead + lead_inc - lead_dec)
        m.d.sync += [lead.eq(lead_d),
                     available.eq((lead_d > 0) | ((lead_d == 0) & ~frame_done & (gt | (px_done & eq))))]

        return m
