"""Folded matrix-vector unit (FINN style): ``PE`` output channels x ``SIMD`` inputs per cycle.

One *input vector* (``N`` values: a pixel's channels for a 1x1 conv, or a sliding window's
``K*K*C`` values in ``(ky, kx, c)`` order for a KxK conv) arrives as ``N/SIMD`` beats of ``SIMD``
lanes.  For each vector the unit emits ``O/PE`` beats of ``PE`` lanes (channels ``0..PE-1`` first),
each lane ``requantize(acc)`` per docs/numerics.md, clamped to ``[0, 255]`` (ReLU) or
``[-128, 127]`` (two's complement in the lane).

Schedule: a vector takes ``O/PE`` *folds* of ``N/SIMD`` *steps*; one step is one cycle and
multiplies ``PE x SIMD`` weights (one word of the weight memory, address ``fold*(N/SIMD) + sf``)
with ``SIMD`` inputs, so one vector costs exactly ``(O/PE)*(N/SIMD)`` cycles and consecutive folds
and vectors follow each other with no bubble.

Input buffer (``NF > 1``): a ping-pong buffer of two halves of ``N/SIMD`` words.  The *writer*
takes input beats into one half whenever a half is free, independently of the compute; the
*reader* (the step issue) computes every fold of a vector from its half.  Fold 0 may run right
behind the writer: step ``sf`` of fold 0 issues once word ``sf`` is written, or in the very cycle
it is written (the beat is then taken from the input port instead of the memory).  ``lead``
counts the complete vectors the reader has not finished (0, 1 or 2):

- ``lead == 0``: writer and reader share a half; fold 0 follows the writer word by word;
- ``lead == 1``: the reader computes a complete vector, the writer fills the other half;
- ``lead == 2``: both halves hold complete vectors: ``i.ready`` is low until the reader issues
  the last step of its vector (the half is free from the next cycle on).

So the input is accepted at any time a half is free, and a producer never has to wait for the
later folds: in steady state the unit takes a vector per ``(O/PE)*(N/SIMD)`` cycles at whatever
pace the producer delivers it (FINN's scheme took input only during fold 0, which turned every
MVU with ``NF > 1`` into a bursty consumer that blocked its producer for ``(NF-1)*SF`` cycles
per vector).  With ``NF == 1`` every step consumes an input beat and there is no buffer.

Stalls: the datapath pipeline never stops (no clock enable on the multipliers, good for DSP
mapping and for fan-out).  Back-pressure is handled by credits: a step that completes an output
beat is only issued while fewer than ``fifo_depth`` output beats are in flight or waiting in the
output FIFO, and the FIFO is deep enough that the credit never runs out in steady state.  ``i.ready``
and ``o.valid`` depend on registered state only.

Memory: weights ``weight_bits`` (block RAM), parameters ``NF`` words, input buffer
``buffer_bits = 2 * (N/SIMD) * 8*SIMD`` for ``NF > 1`` (0 otherwise), output FIFO
``fifo_depth = latency + 1 + out_buffer`` words of ``8*PE`` bits (``fifo_bits``).

Banked weights (``weight_bank_depth``, set by the build plan where the target's block RAM is
shallower than the weight memory: squeezehw.plan.resources.weight_bank_depth): the ``NF*SF``
words are split in address order into ``weight_banks`` banks of ``weight_bank_depth`` words,
stored side by side in one memory of ``weight_bank_depth`` rows (``weight_memory_words``).  A deep
memory tiled by the block RAM mapper has a depth-select mux between the blocks' slow outputs and
the operand register; banked, the row of all banks is registered first (stage 1b) and the bank is
selected from registers by a registered index, which costs one cycle of latency and
``weight_banks * PE*SIMD*w_bits`` flip-flops, and no block RAM (the side-by-side rows fill the
blocks at least as densely).  Units whose memory fits one block depth are built without it.

Opt-in ``requant="serial"`` (default off; see the class docstring and ``_serial_requant``)
replaces stages 5-6 by a digit-serial shift-add multiplier in LUTs for devices without DSPs to
spare; the schedule above is unchanged, the latency grows by ``requant_cycles - 1``.

Pipeline (cycle 0 = the step is issued; ``latency`` counts from the issue of a fold's last step to
its beat appearing on ``o``):
  0 issue: counters, weight/buffer memory reads          5 acc * mult, as two DSP-sized halves
  1 select input; register operands (BRAM out is slow)  6 add the halves (requant product)
  1b banked weights only: all banks' row and the input
     registered; stage 1 then selects the bank into op_w
  2a operands into the multipliers' own registers       7 >> (shift - 1)
  2 PE*SIMD products (the multipliers' output registers) 8 +1 >> 1 (round half up), clamp
  2c products copied next to the adder tree (fabric)
  3 adder tree (per PE); parameters registered           9 FIFO write, on ``o`` 3 cycles later
  4 accumulate (bias loaded on the first step)
  4b requant operands into the multipliers' registers
Every multiply is a RegisteredMultiplier (hw/multiplier.py): on ECP5 a MULT18X18D with its input
and output registers (2a/2 and 4b/5), elsewhere the same registers around ``*``.
"""
from __future__ import annotations

import numpy as np
from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..errors import UserError
from ..frontend.ir import bits_for_signed
from .errors import FoldingError
from .multiplier import RegisteredMultiplier, check_primitive
from .stream_register import StreamRegister
from .weight_decoder import WeightDecoder

__all__ = ["MVU", "MVU_FIFO_LATENCY", "WEIGHT_BANK_STAGES", "divisors", "serial_requant_digit_bits",
           "mvu_latency"]

MULT_BITS = 16
MAX_SHIFT = 48
_ISSUE_TO_FIFO_WRITE = 12      # cycles from issue to the FIFO write (stages 0..9 above, 2a, 2c and 4b; not 1b)
_FIFO_READ_LATENCY = 3         # SyncFIFOBuffered: written in cycle c, r_rdy in cycle c + 2; + output register
MVU_FIFO_LATENCY = _ISSUE_TO_FIFO_WRITE + _FIFO_READ_LATENCY   # ``latency`` of a parallel-requant MVU
WEIGHT_BANK_STAGES = 1         # stage 1b: a banked weight memory's rows registered before the bank select


def serial_requant_digit_bits(sf: int) -> int:
    """Digit width of a serial requantiser: the smallest whose pass count fits between two beats
    (a fold's beat leaves the accumulator at most every ``N/SIMD`` = ``sf`` cycles)."""
    return next(r for r in range(1, MULT_BITS + 1) if -(-MULT_BITS // r) <= sf)


def mvu_latency(requant: str, sf: int, banked: bool = False) -> int:
    """Cycles from the issue of a fold's last step to its beat on ``o`` (module docstring); the
    build plan sizes the output FIFO from it (``fifo_depth = latency + 1 + out_buffer``).
    ``banked``: the weight memory is split into banks (``weight_bank_depth``), one stage more."""
    extra = WEIGHT_BANK_STAGES if banked else 0
    if requant == "serial":
        return MVU_FIFO_LATENCY + -(-MULT_BITS // serial_requant_digit_bits(sf)) - 1 + extra
    return MVU_FIFO_LATENCY + extra


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _ints(name, what, a, shape):
    a = np.asarray(a)
    if a.shape != shape:
        raise UserError(f"{name}: {what} has shape {a.shape}, expected {shape}")
    if a.size and not np.issubdtype(a.dtype, np.integer):
        if not np.all(np.equal(np.mod(a, 1), 0)):
            raise UserError(f"{name}: {what} must be integers (got dtype {a.dtype}); "
                            "pass the quantised integer model's arrays")
    return [int(v) for v in a.reshape(-1)]


def _tree_sum(terms, width):
    """Balanced adder tree; every partial sum is truncated to ``width`` bits, which is exact
    because ``width`` holds every partial sum (derived from the actual weights)."""
    terms = list(terms)
    while len(terms) > 1:
        nxt = []
        for k in range(0, len(terms) - 1, 2):
            nxt.append((terms[k] + terms[k + 1])[:width].as_signed())
        if len(terms) % 2:
            nxt.append(terms[-1])
        terms = nxt
    return terms[0]


class MVU(wiring.Component):
    """Folded PE x SIMD matrix-vector unit with requantisation.  See the module docstring.

    ``weights``: int array (O, N), column order = input stream order.  ``bias``, ``mult``,
    ``shift``: (O,) ints (docs/numerics.md).  ``simd`` divides N, ``pe`` divides O.
    ``in_signed``: input lanes are int8 instead of uint8.  ``out_buffer``: extra output FIFO
    entries (beats) beyond the ones the credit scheme needs, for a consumer that takes its input
    in bursts (a Fire module's concat): the unit keeps computing while they fill.

    ``requant``: ``"parallel"`` (the default: one ``acc x mult`` multiplier per PE lane, DSP-sized
    halves, a beat per cycle) or ``"serial"`` (opt-in area mode for tiny devices: a digit-serial
    shift-add multiplier per lane in LUTs, no DSP, taking ``requant_cycles`` = ceil(16 /
    ``requant_digit_bits``) cycles per beat).  A fold's beat leaves the accumulator at most every
    ``N/SIMD`` cycles, so the serial unit keeps up when ``requant_cycles <= N/SIMD``; the digit
    width is the smallest that meets this (1 bit, 16 cycles, for ``N/SIMD >= 16``), so throughput
    (``cycles_per_vector``) is unchanged and only the latency grows by ``requant_cycles - 1``.

    ``multiplier``: the primitive every RegisteredMultiplier is built as (hw/multiplier.py).
    Both come from the build plan (squeezehw/plan/lowering.py) as explicit arguments.

    ``timing_registers`` (default True): the issue logic's flags (last step, last fold, free
    credit, bypass, ready) and the input buffer's read address are registers computed a cycle
    ahead (see ``elaborate``).  False computes them with plain compares and an adder instead, as
    before the ULX3S 100 MHz work: the same cycle behaviour with fewer logic cells, for iCE40
    builds (``squeezehw.plan.lowering.Target.timing_registers``), whose clock does not need them.
    """

    REQUANT_MODES = ("parallel", "serial")

    def __init__(self, *, weights, bias, mult, shift, simd, pe, relu, in_signed=False, name="mvu",
                 out_buffer=0, requant="parallel", multiplier="generic", weight_code=None,
                 weight_bank_depth=None, timing_registers=True):
        try:
            if isinstance(out_buffer, bool) or not isinstance(out_buffer, (int, np.integer)) or out_buffer < 0:
                raise UserError(f"{name}: out_buffer={out_buffer!r} must be an integer >= 0 (output beats)")
            if requant not in self.REQUANT_MODES:
                raise UserError(f"{name}: requant={requant!r} must be one of {', '.join(self.REQUANT_MODES)}")
            self.out_buffer = int(out_buffer)
            self.requant = requant
            self.multiplier = check_primitive(multiplier)
            self.timing_registers = bool(timing_registers)
            self._configure(weights, bias, mult, shift, simd, pe, relu, in_signed, name)
            self.weight_code = self._check_weight_code(weight_code)
            self._configure_banks(weight_bank_depth)
        except UserError:
            self._MustUse__silence = True      # a rejected block is not an "unused elaboratable"
            raise
        super().__init__({
            "i": In(stream.Signature(unsigned(8 * self.simd))),
            "o": Out(stream.Signature(unsigned(8 * self.pe))),
        })

    def _configure(self, weights, bias, mult, shift, simd, pe, relu, in_signed, name):
        self.name = str(name)
        w = np.asarray(weights)
        if w.ndim != 2 or w.shape[0] < 1 or w.shape[1] < 1:
            raise UserError(f"{name}: weights must be a non-empty 2-D (outputs, inputs) array, "
                            f"got shape {w.shape}")
        O, N = w.shape
        for fac, label, total, what in ((simd, "SIMD", N, "inputs"), (pe, "PE", O, "output channels")):
            if isinstance(fac, bool) or not isinstance(fac, (int, np.integer)):
                raise FoldingError(f"{name}: {label} must be an integer, got {fac!r}")
            if not 1 <= fac <= total or total % fac:
                raise FoldingError(f"{name}: {label}={fac} does not divide {total} {what}; "
                                   f"choose one of {divisors(total)}")
        self.O, self.N, self.simd, self.pe = O, N, int(simd), int(pe)
        self.relu, self.in_signed = bool(relu), bool(in_signed)
        self.w = np.array(_ints(name, "weights", w, (O, N)), dtype=object).reshape(O, N)
        self.bias = _ints(name, "bias", bias, (O,))
        self.mult = _ints(name, "mult", mult, (O,))
        self.shift = _ints(name, "shift", shift, (O,))
        for o in range(O):
            if not 0 <= self.mult[o] < 1 << MULT_BITS:
                raise UserError(f"{name}: mult[{o}]={self.mult[o]} is outside [0, 2**{MULT_BITS}); "
                                "requantisation multipliers are unsigned 16-bit")
            if not 1 <= self.shift[o] <= MAX_SHIFT:
                raise UserError(f"{name}: shift[{o}]={self.shift[o]} is outside [1, {MAX_SHIFT}]")

        self.SF, self.NF = N // self.simd, O // self.pe
        self.in_lo, self.in_hi = (-128, 127) if self.in_signed else (0, 255)
        self.out_lo, self.out_hi = (0, 255) if self.relu else (-128, 127)

        # Widths derived from the actual numbers (docs/numerics.md, "Widths").
        wi = np.array(self.w.tolist(), dtype=object)
        pos = np.where(wi > 0, wi, 0)
        neg = np.where(wi < 0, wi, 0)
        b = np.array(self.bias, dtype=object)
        hi = pos.sum(1) * self.in_hi + neg.sum(1) * self.in_lo + b
        lo = pos.sum(1) * self.in_lo + neg.sum(1) * self.in_hi + b
        self.acc_bits = bits_for_signed(min(min(lo), 0), max(max(hi), 0))
        # every group of SIMD products (no bias) must fit the adder tree's width
        gp = pos.reshape(O, self.SF, self.simd).sum(2)
        gn = neg.reshape(O, self.SF, self.simd).sum(2)
        ghi = gp * self.in_hi + gn * self.in_lo
        glo = gp * self.in_lo + gn * self.in_hi
        self.tree_bits = bits_for_signed(min(int(glo.min()), 0), max(int(ghi.max()), 0))
        self.w_bits = bits_for_signed(min(int(wi.min()), 0), max(int(wi.max()), 0))
        self.bias_bits = bits_for_signed(min(min(self.bias), 0), max(max(self.bias), 0))
        self.shift_bits = max(1, (max(self.shift) - 1).bit_length())
        self.prod_bits = self.acc_bits + MULT_BITS      # signed acc x unsigned 16-bit mult

        # Public figures.
        self.cycles_per_vector = self.NF * self.SF
        self.multipliers = self.pe * self.simd
        self.requant_multipliers = self.pe
        self.weight_depth = self.NF * self.SF
        self.weight_width = self.pe * self.simd * self.w_bits
        self.weight_bits = self.weight_depth * self.weight_width
        self.latency = mvu_latency(self.requant, self.SF)
        if self.requant == "serial":
            # digit-serial requantiser: the smallest digit whose pass count fits between two beats
            self.requant_digit_bits = serial_requant_digit_bits(self.SF)
            self.requant_cycles = -(-MULT_BITS // self.requant_digit_bits)
            assert self.requant_cycles <= self.SF, "a serial requantiser must finish within N/SIMD cycles"
            self.requant_multipliers = 0
            # the layer's smallest shift is applied as wiring, so the barrel shifter only spans the
            # layer's spread of shifts (floor divisions compose: exact)
            self.requant_base_shift = min(min(self.shift) - 1, self.prod_bits - 1)
            self.requant_var_shift_bits = max(1, (max(self.shift) - 1 - self.requant_base_shift).bit_length())
        # ping-pong input buffer: two vectors (NF == 1 streams straight through)
        self.buffer_depth = 2 * self.SF if self.NF > 1 else 0
        self.buffer_bits = self.buffer_depth * 8 * self.simd
        # input beats the unit can take ahead of the compute (it accepts a whole vector beyond
        # the one it works on); 0 for NF == 1
        self.input_slack_beats = self.SF if self.NF > 1 else 0
        # enough credits that a beat issued every cycle never waits (see the module docstring),
        # plus the requested buffering for a bursty consumer
        self.fifo_depth = self.latency + 1 + self.out_buffer
        self.fifo_bits = self.fifo_depth * 8 * self.pe
        # SyncFIFOBuffered only honours its full depth from depth 3 up (see global_pool.py)
        assert self.fifo_depth >= 3

    def _configure_banks(self, bank_depth):
        """``weight_bank_depth``: None (one weight memory) or the words per bank of a banked one:
        the ``weight_depth`` words are split in address order into ``weight_banks`` banks of
        ``weight_bank_depth`` words (the last one may be shorter), stored side by side in one
        memory of ``weight_bank_depth`` rows of ``weight_banks * weight_width`` bits, so a block
        RAM mapper fills its blocks as densely as it would the deep memory, but each block holds
        a whole row range and no block's output goes through a depth-select mux before a
        register (stage 1b).  A bank depth that holds every word keeps one memory."""
        if bank_depth is not None:
            if isinstance(bank_depth, bool) or not isinstance(bank_depth, (int, np.integer)) or bank_depth < 1:
                raise UserError(f"{self.name}: weight_bank_depth={bank_depth!r} must be a positive integer "
                                "(weight words per bank) or None")
            if self.weight_code is not None:
                raise UserError(f"{self.name}: compressed weights (weight_code) are read through a "
                                "WeightDecoder, not a banked memory; leave weight_bank_depth None")
            if bank_depth >= self.weight_depth:
                bank_depth = None
        self.weight_bank_depth = None if bank_depth is None else int(bank_depth)
        self.weight_banks = 1 if bank_depth is None else -(-self.weight_depth // self.weight_bank_depth)
        if self.weight_banks > 1:
            self.latency = mvu_latency(self.requant, self.SF, banked=True)
            self.fifo_depth = self.latency + 1 + self.out_buffer
            self.fifo_bits = self.fifo_depth * 8 * self.pe

    @classmethod
    def from_qconv(cls, q, *, simd, pe, name=None, out_buffer=0, requant="parallel", multiplier="generic",
                   weight_code=None, weight_bank_depth=None, timing_registers=True):
        """An MVU for a QConv; its weights are reordered to the sliding window's (ky, kx, c) order."""
        K = q.kernel
        w = np.asarray(q.weight).transpose(0, 2, 3, 1).reshape(q.out_ch, K * K * q.in_ch)
        return cls(weights=w, bias=q.bias, mult=q.mult, shift=q.shift, simd=simd, pe=pe,
                   relu=q.relu, in_signed=q.in_signed, name=name or q.name, out_buffer=out_buffer,
                   requant=requant, multiplier=multiplier, weight_code=weight_code,
                   weight_bank_depth=weight_bank_depth, timing_registers=timing_registers)

    # --- compressed weights (optional weight source) ------------------------------------------
    def _check_weight_code(self, code):
        """``weight_code``: ``None`` (weights in a dense memory, ``weight_words``) or a
        :class:`squeezehw.quant.sparse_weights.PackedWeights` (codebook + dense-index/bitmap stream, see
        sparse_weights.py) that a :class:`WeightDecoder` turns into the same words, one per cycle.
        The stream must decode to exactly this unit's weights in its fold order."""
        if code is None:
            return None
        from ..quant.sparse_weights import PackedWeights, decode_stream, mvu_vectors
        if not isinstance(code, PackedWeights):
            raise UserError(f"{self.name}: weight_code must be a PackedWeights "
                            f"(squeezehw.quant.sparse_weights.encode_for_mvu), got {type(code).__name__}")
        s = code.stream
        shape = (self.NF * self.SF, self.pe * self.simd)
        if (s.vectors, s.lanes) != shape:
            raise UserError(f"{self.name}: encoded weights hold {s.vectors} vectors of {s.lanes} lanes, "
                            f"the unit reads {shape[0]} of {shape[1]} (PE={self.pe}, SIMD={self.simd}); "
                            "encode them with this layer's folding")
        dense = mvu_vectors(np.array(self.w.tolist(), dtype=np.int64), self.pe, self.simd)
        got = decode_stream(s)
        if not np.array_equal(got, dense):
            a, lane = np.argwhere(got != dense)[0]
            raise UserError(f"{self.name}: encoded weights differ from the layer's weights at vector {a} "
                            f"lane {lane} ({got[a, lane]} vs {dense[a, lane]}); re-encode this layer")
        return code

    # --- memory images -------------------------------------------------------------------------
    def weight_words(self) -> list[int]:
        """Word at address fold*SF + sf: lane (p, s) = weights[fold*PE + p, sf*SIMD + s]."""
        mask = (1 << self.w_bits) - 1
        words = []
        for f in range(self.NF):
            for sf in range(self.SF):
                word = 0
                for p in range(self.pe):
                    for s in range(self.simd):
                        v = int(self.w[f * self.pe + p, sf * self.simd + s]) & mask
                        word |= v << ((p * self.simd + s) * self.w_bits)
                words.append(word)
        return words

    def weight_memory_words(self) -> tuple[list[int], int]:
        """(words, width) of the dense weight memory as built: ``weight_words`` for one memory;
        banked, row r holds bank b's word ``b*weight_bank_depth + r`` at bits ``b*weight_width``
        up (zero past the last word)."""
        words = self.weight_words()
        if self.weight_banks == 1:
            return words, self.weight_width
        rows, width = self.weight_bank_depth, self.weight_width
        image = [0] * rows
        for a, word in enumerate(words):
            image[a % rows] |= word << ((a // rows) * width)
        return image, self.weight_banks * width

    def _param_fields(self):
        return [(self.bias_bits, True), (MULT_BITS, False), (self.shift_bits, False)]

    def param_words(self) -> list[int]:
        """Word at address fold: per PE lane (bias, mult, shift - 1), lane 0 in the LSBs."""
        lw = sum(f[0] for f in self._param_fields())
        words = []
        for f in range(self.NF):
            word = 0
            for p in range(self.pe):
                o = f * self.pe + p
                lane = ((self.bias[o] & ((1 << self.bias_bits) - 1))
                        | (self.mult[o] << self.bias_bits)
                        | ((self.shift[o] - 1) << (self.bias_bits + MULT_BITS)))
                word |= lane << (p * lw)
            words.append(word)
        return words

    # --- hardware ------------------------------------------------------------------------------
    def elaborate(self, platform):
        m = Module()
        SF, NF, PE, SIMD = self.SF, self.NF, self.pe, self.simd
        banked = self.weight_banks > 1

        # Datapath registers are ``reset_less``: the valid flags beside them are reset, and the
        # reset net's fanout (thousands of LSR pins) set the largest ULX3S build's Fmax at 61 MHz.
        # ---- stage 0: issue ----------------------------------------------------------------
        sf = Signal(range(SF), name="sf")
        nf = Signal(range(NF), name="nf")
        if not banked:
            waddr = Signal(range(NF * SF), name="waddr")
        first_step = sf == 0
        # The issue decision (`fire`) reads only flip-flops: the counters' compares (last step of
        # a fold, last fold of a vector, a free credit, the bypass and ready conditions) are flags
        # registered from their next values, so `fire` is one or two LUTs from the input's valid
        # (window valid -> lead/sf compares -> fire -> nf/raddr enables was the ULX3S critical
        # path at 99.61 MHz, c58d57a seed 1).  Without timing registers they are the compares.
        tr = self.timing_registers
        fifo = m.submodules.fifo = SyncFIFOBuffered(width=8 * PE, depth=self.fifo_depth)
        credits_used = Signal(range(self.fifo_depth + 1))
        if tr:
            last_step = Signal(init=SF == 1, name="last_step")     # sf == SF - 1
            last_fold = Signal(init=NF == 1, name="last_fold")     # nf == NF - 1
            credit_free = Signal(init=1, name="credit_free")       # credits_used < fifo_depth
        else:
            last_step, last_fold = sf == SF - 1, nf == NF - 1
            credit_free = credits_used < self.fifo_depth
        can_issue = ~last_step | credit_free
        if self.weight_code is not None:
            # compressed weights: a step issues only with its decoded weight vector (the decoder
            # keeps one per cycle in steady state, sparse_weights.choose_layout)
            wdec = m.submodules.weight_decoder = WeightDecoder(self.weight_code, lane_bits=self.w_bits)
            can_issue = can_issue & wdec.o.valid
        fire = Signal()
        s1_x = Signal(8 * SIMD, reset_less=True)
        m.d.sync += s1_x.eq(self.i.payload)

        if NF > 1:
            # ---- ping-pong input buffer (see the module docstring) ----------------------------
            buf = m.submodules.inbuf = Memory(shape=unsigned(8 * SIMD), depth=2 * SF, init=[])
            bw = buf.write_port()
            br = buf.read_port()    # not transparent: a same-cycle write is not seen (bypass below)
            lead = Signal(range(3), name="lead")
            wsf = Signal(range(SF), name="wsf")                  # words written into the half
            wptr = Signal(range(2 * SF), name="wptr")            # = whalf*SF + wsf
            rbase = Signal(range(2 * SF), name="rbase")          # = rhalf*SF
            write = Signal()
            # lead == 0: fold 0 runs behind the writer (sf <= wsf); at sf == wsf the word is the
            # one on the input port this cycle.  Both flags are registered (see `last_step`).
            if tr:
                raddr = Signal(range(2 * SF), name="raddr")      # = rbase + sf
                bypass = Signal(init=1, name="bypass")           # (lead == 0) & (sf == wsf)
                ready = Signal(init=1, name="ready")             # lead != 2
            else:
                raddr, bypass, ready = rbase + sf, (lead == 0) & (sf == wsf), lead != 2
            m.d.comb += [
                self.i.ready.eq(ready),
                write.eq(self.i.valid & ready),
                bw.addr.eq(wptr), bw.data.eq(self.i.payload), bw.en.eq(write),
                fire.eq(can_issue & (~bypass | write)),
                br.addr.eq(raddr),
            ]
            # the read address rbase + sf is a register stepped with them (an adder in front of
            # the LUT-RAM read was a ULX3S critical path at 97.99 MHz): the next step's word, or
            # at a fold's last step the start of this half again or, after the vector's last
            # fold, of the other half
            if tr:
                with m.If(fire):
                    m.d.sync += raddr.eq(Mux(last_step, Mux(last_fold, Mux(rbase == 0, SF, 0), rbase),
                                             raddr + 1))
            with m.If(write):
                m.d.sync += [wsf.eq(Mux(wsf == SF - 1, 0, wsf + 1)),
                             wptr.eq(Mux(wptr == 2 * SF - 1, 0, wptr + 1))]
            wsf_last = wsf == SF - 1
            vec_in = write & wsf_last                           # writer completes a vector
            vec_out = fire & last_step & last_fold             # reader issues a vector's last step
            with m.If(vec_out):
                m.d.sync += rbase.eq(Mux(rbase == 0, SF, 0))
            up, down = vec_in & ~vec_out, vec_out & ~vec_in
            with m.If(up):
                m.d.sync += lead.eq(lead + 1)
            with m.Elif(down):
                m.d.sync += lead.eq(lead - 1)
            # the flags' next values: every case computed from registers, the late `fire` and
            # `write` only select.  sf and wsf both count modulo SF, so stepping both keeps
            # their equality.
            if tr:
                sf_step = Mux(last_step, 0, sf + 1)
                wsf_step = Mux(wsf_last, 0, wsf + 1)
                same = Array([sf == wsf, sf_step == wsf, sf == wsf_step, sf == wsf])[Cat(fire, write)]
                lead0_next = Mux(up, 0, Mux(down, lead == 1, lead == 0))
                m.d.sync += [bypass.eq(lead0_next & same),
                             ready.eq(Mux(up, lead != 1, Mux(down, 1, lead != 2)))]
            s1_bypass = Signal()
            m.d.sync += s1_bypass.eq(bypass)
            x_word = Mux(s1_bypass, s1_x, br.data)
        else:
            m.d.comb += [
                self.i.ready.eq(can_issue),
                fire.eq(can_issue & self.i.valid),
            ]
            x_word = s1_x

        taken = fifo.r_rdy & fifo.r_en      # a beat leaves the FIFO (for the output register)
        issued_out = fire & last_step
        with m.If(issued_out & ~taken):
            m.d.sync += credits_used.eq(credits_used + 1)
            if tr:
                m.d.sync += credit_free.eq(credits_used < self.fifo_depth - 1)
        with m.Elif(~issued_out & taken):
            m.d.sync += credits_used.eq(credits_used - 1)
            if tr:
                m.d.sync += credit_free.eq(1)

        with m.If(fire):
            m.d.sync += sf.eq(Mux(last_step, 0, sf + 1))
            if tr:
                m.d.sync += last_step.eq(Mux(last_step, SF == 1, sf == SF - 2))
            if not banked:
                m.d.sync += [waddr.eq(Mux(waddr == NF * SF - 1, 0, waddr + 1))]
            with m.If(last_step):
                m.d.sync += nf.eq(Mux(last_fold, 0, nf + 1))
                if tr:
                    m.d.sync += last_fold.eq(Mux(last_fold, NF == 1, nf == NF - 2))

        if banked:
            w_rows, w_bank = self._banked_weights(m, fire)
        elif self.weight_code is None:
            wmem = m.submodules.weights = Memory(shape=unsigned(self.weight_width),
                                                 depth=self.weight_depth, init=self.weight_words())
            wrd = wmem.read_port()
            m.d.comb += wrd.addr.eq(waddr)
            w_word = wrd.data
        else:
            # the decoded vector is taken in the issue cycle and registered, so it lines up with
            # where the dense memory's synchronous read data would be (stage 1)
            m.d.comb += wdec.o.ready.eq(fire)
            w_word = Signal(self.weight_width, name="wdec_word", reset_less=True)
            m.d.sync += w_word.eq(wdec.o.payload)

        s1_valid, s1_first, s1_last = Signal(), Signal(), Signal()
        s1_nf = Signal(range(NF))
        m.d.sync += [s1_valid.eq(fire), s1_first.eq(first_step), s1_last.eq(last_step),
                     s1_nf.eq(nf)]

        if banked:
            # ---- stage 1b (banked weight memory only): every bank's word registered, the bank
            # then selected by a registered index into op_w; the input side waits the same cycle
            w_word, x_word, s1_valid, s1_first, s1_last, s1_nf = self._bank_stage(
                m, w_rows, w_bank, x_word, s1_valid, s1_first, s1_last, s1_nf)

        # ---- stage 1: register the operands ---------------------------------------------------
        # block RAM clock-to-out is slow (no output register in the inferred DP16KD), so the
        # memory outputs get a register of their own before the multipliers.
        op_valid, op_first, op_last = Signal(), Signal(), Signal()
        op_nf = Signal(range(NF))
        op_x = Signal(8 * SIMD, reset_less=True)
        op_w = Signal(self.weight_width, reset_less=True)
        m.d.sync += [op_valid.eq(s1_valid), op_first.eq(s1_first), op_last.eq(s1_last),
                     op_nf.eq(s1_nf), op_x.eq(x_word), op_w.eq(w_word)]

        # ---- stage 2: products ---------------------------------------------------------------
        # 2a: operands registered inside the multiplier, 2b: product register (RegisteredMultiplier:
        # on ECP5 both are the MULT18X18D's own registers, so the multiply is register to register)
        prod_bits = bits_for_signed(min(self.in_lo * (1 << (self.w_bits - 1)),
                                        self.in_hi * -(1 << (self.w_bits - 1))),
                                    max(self.in_hi * ((1 << (self.w_bits - 1)) - 1),
                                        self.in_lo * -(1 << (self.w_bits - 1))))
        s2_prod = [[Signal(signed(prod_bits), name=f"prod_{p}_{s}") for s in range(SIMD)]
                   for p in range(PE)]
        x_shape = signed(8) if self.in_signed else unsigned(8)
        for p in range(PE):
            for s in range(SIMD):
                mul = RegisteredMultiplier(signed(self.w_bits), x_shape, name=f"mul_{p}_{s}",
                                           primitive=self.multiplier)
                m.submodules[f"mul_{p}_{s}"] = mul
                lsb = (p * SIMD + s) * self.w_bits
                m.d.comb += [mul.a.eq(op_w[lsb:lsb + self.w_bits].as_signed()),
                             mul.b.eq(op_x[8 * s:8 * s + 8]), mul.ce.eq(1),
                             s2_prod[p][s].eq(mul.p)]
        s2a_valid, s2a_first, s2a_last = Signal(), Signal(), Signal()
        s2a_nf = Signal(range(NF))
        s2_valid, s2_first, s2_last = Signal(), Signal(), Signal()
        s2_nf = Signal(range(NF))
        m.d.sync += [s2a_valid.eq(op_valid), s2a_first.eq(op_first), s2a_last.eq(op_last), s2a_nf.eq(op_nf),
                     s2_valid.eq(s2a_valid), s2_first.eq(s2a_first), s2_last.eq(s2a_last), s2_nf.eq(s2a_nf)]

        # ---- stage 2c: products copied into fabric registers by the adder tree ----------------------
        # the route from the DSP column to the tree gets a cycle of its own (DSP output -> 5.6 ns
        # route -> SIMD-input adder tree set the ULX3S Fmax at 80 MHz)
        s2c_prod = [[Signal(signed(prod_bits), name=f"prodc_{p}_{s}", reset_less=True) for s in range(SIMD)]
                    for p in range(PE)]
        for p in range(PE):
            m.d.sync += [s2c_prod[p][s].eq(s2_prod[p][s]) for s in range(SIMD)]
        s2c_valid, s2c_first, s2c_last = Signal(), Signal(), Signal()
        m.d.sync += [s2c_valid.eq(s2_valid), s2c_first.eq(s2_first), s2c_last.eq(s2_last)]

        # ---- stage 3: adder tree; parameter ROM read ---------------------------------------
        tw = max(self.tree_bits, prod_bits)
        s3_sum = [Signal(signed(tw), name=f"dot_{p}", reset_less=True) for p in range(PE)]
        for p in range(PE):
            m.d.sync += s3_sum[p].eq(_tree_sum(s2c_prod[p], tw))
        s3_valid, s3_first, s3_last = Signal(), Signal(), Signal()
        m.d.sync += [s3_valid.eq(s2c_valid), s3_first.eq(s2c_first), s3_last.eq(s2c_last)]

        lane_w = sum(f[0] for f in self._param_fields())
        if NF > 1:
            pmem = m.submodules.params = Memory(shape=unsigned(PE * lane_w), depth=NF,
                                                init=self.param_words())
            # read a stage early and register the word: the bias feeds the accumulator's adder,
            # and a memory's output straight into a carry chain is slow on ECP5
            prd = pmem.read_port()
            m.d.comb += prd.addr.eq(s2_nf)
            pword = Signal(PE * lane_w, name="pword", reset_less=True)
            m.d.sync += pword.eq(prd.data)
        else:
            pword = Const(self.param_words()[0], PE * lane_w)

        def field(p, k):
            lsb = p * lane_w + sum(f[0] for f in self._param_fields()[:k])
            width, sgn = self._param_fields()[k]
            v = pword[lsb:lsb + width]
            return v.as_signed() if sgn else v

        # ---- stage 4: accumulate -------------------------------------------------------------
        acc = [Signal(signed(self.acc_bits), name=f"acc_{p}", reset_less=True) for p in range(PE)]
        s4_valid = Signal()
        s4_mult = [Signal(MULT_BITS, name=f"mult_{p}", reset_less=True) for p in range(PE)]
        s4_shm1 = [Signal(self.shift_bits, name=f"shm1_{p}", reset_less=True) for p in range(PE)]
        with m.If(s3_valid):
            for p in range(PE):
                # partial sums (bias + any subset of products) lie inside the acc range: exact
                m.d.sync += acc[p].eq(Mux(s3_first, field(p, 0), acc[p]) + s3_sum[p])
        m.d.sync += s4_valid.eq(s3_valid & s3_last)
        for p in range(PE):
            m.d.sync += [s4_mult[p].eq(field(p, 1)), s4_shm1[p].eq(field(p, 2))]

        # ---- stage 4b: requant operands registered beside (on ECP5: inside) the multipliers --
        # The accumulator's flip-flops sit by its adder; the multiplier's own operand registers
        # keep the route to the DSP column off the multiply path (FF -> route -> MULT18X18D ->
        # route -> FF set the ULX3S Fmax at 70-82 MHz).
        rq_valid = Signal()
        rq_shm1 = [Signal(self.shift_bits, name=f"rqshm1_{p}", reset_less=True) for p in range(PE)]
        m.d.sync += rq_valid.eq(s4_valid)
        for p in range(PE):
            m.d.sync += rq_shm1[p].eq(s4_shm1[p])

        if self.requant == "serial":
            rq_acc = [Signal(signed(self.acc_bits), name=f"rqacc_{p}") for p in range(PE)]
            rq_mult = [Signal(MULT_BITS, name=f"rqmult_{p}") for p in range(PE)]
            for p in range(PE):
                m.d.sync += [rq_acc[p].eq(acc[p]), rq_mult[p].eq(s4_mult[p])]
            s5_valid, s5_prod, s5_shm1 = self._serial_requant(m, rq_valid, rq_acc, rq_mult, rq_shm1)
            return self._finish(m, fifo, s5_valid, s5_prod, s5_shm1, self.prod_bits - self.requant_base_shift)

        # ---- stage 5: requant partial products ------------------------------------------------
        # An 18x18 DSP takes a signed 18-bit operand: a wider accumulator is split at bit 17 into
        # an unsigned low part and a signed high part, and the two products are added in the next
        # stage (the DSP cascade adder was the critical path when Yosys built it in one cycle).
        split = self.acc_bits > 18
        pp_valid = Signal()
        pp_lo = [Signal(signed(self.prod_bits), name=f"pplo_{p}") for p in range(PE)]
        pp_hi = [Signal(signed(max(1, self.prod_bits - 17)), name=f"pphi_{p}") for p in range(PE)]
        pp_shm1 = [Signal(self.shift_bits, name=f"shm1a_{p}", reset_less=True) for p in range(PE)]
        m.d.sync += pp_valid.eq(rq_valid)
        for p in range(PE):
            m.d.sync += pp_shm1[p].eq(rq_shm1[p])
            parts = [(acc[p][:17], pp_lo[p]), (acc[p][17:].as_signed(), pp_hi[p])] if split \
                else [(acc[p], pp_lo[p])]
            for k, (operand, product) in enumerate(parts):
                mul = RegisteredMultiplier(operand.shape(), unsigned(MULT_BITS), name=f"rqmul_{p}_{k}",
                                           primitive=self.multiplier)
                m.submodules[f"rqmul_{p}_{k}"] = mul
                m.d.comb += [mul.a.eq(operand), mul.b.eq(s4_mult[p]), mul.ce.eq(1), product.eq(mul.p)]

        # ---- stage 6: requant product ----------------------------------------------------------
        s5_valid = Signal()
        s5_prod = [Signal(signed(self.prod_bits), name=f"rq_{p}", reset_less=True) for p in range(PE)]
        s5_shm1 = [Signal(self.shift_bits, name=f"shm1b_{p}", reset_less=True) for p in range(PE)]
        m.d.sync += s5_valid.eq(pp_valid)
        for p in range(PE):
            total = (pp_hi[p] << 17) + pp_lo[p] if split else pp_lo[p]
            m.d.sync += [s5_prod[p].eq(total), s5_shm1[p].eq(pp_shm1[p])]
        return self._finish(m, fifo, s5_valid, s5_prod, s5_shm1, self.prod_bits)

    def _banked_weights(self, m, fire):
        """Stage 0 of a banked weight memory: the row and bank counters (address order: bank
        ``b`` holds words ``b*rows .. b*rows + rows - 1``) and the read of all banks' row.
        Returns (the read row, the bank index registered beside it)."""
        rows, banks, width = self.weight_bank_depth, self.weight_banks, self.weight_width
        last_rows = self.weight_depth - (banks - 1) * rows         # words in the last bank
        image, image_width = self.weight_memory_words()
        wmem = m.submodules.weights = Memory(shape=unsigned(image_width), depth=rows, init=image)
        wrd = wmem.read_port()
        wrow = Signal(range(rows), name="wrow")
        wbank = Signal(range(banks), name="wbank")
        m.d.comb += wrd.addr.eq(wrow)
        with m.If(fire):
            with m.If((wbank == banks - 1) & (wrow == last_rows - 1)):
                m.d.sync += [wrow.eq(0), wbank.eq(0)]
            with m.Elif(wrow == rows - 1):
                m.d.sync += [wrow.eq(0), wbank.eq(wbank + 1)]
            with m.Else():
                m.d.sync += wrow.eq(wrow + 1)
        s1_bank = Signal(range(banks), name="s1_bank", reset_less=True)
        m.d.sync += s1_bank.eq(wbank)
        assert width * banks == image_width
        return wrd.data, s1_bank

    def _bank_stage(self, m, w_rows, w_bank, x_word, valid, first, last, nf):
        """Stage 1b: register the block RAM's row (slow clock-to-out, no mux after it) and the
        bank index, select the bank's word from registers; delay the input operand and the step
        flags by the same cycle."""
        width = self.weight_width
        rows_q = Signal(len(w_rows), name="w_rows", reset_less=True)
        bank_q = Signal(len(w_bank), name="w_bank", reset_less=True)
        x_q = Signal(len(x_word), name="s1b_x", reset_less=True)
        valid_q, first_q, last_q = Signal(name="s1b_valid"), Signal(name="s1b_first"), Signal(name="s1b_last")
        nf_q = Signal(nf.shape(), name="s1b_nf")
        m.d.sync += [rows_q.eq(w_rows), bank_q.eq(w_bank), x_q.eq(x_word), valid_q.eq(valid),
                     first_q.eq(first), last_q.eq(last), nf_q.eq(nf)]
        w_word = Array(rows_q[b * width:(b + 1) * width] for b in range(self.weight_banks))[bank_q]
        return w_word, x_q, valid_q, first_q, last_q, nf_q

    def _serial_requant(self, m, s4_valid, acc, s4_mult, s4_shm1):
        """Opt-in ``requant="serial"``: per PE lane, ``acc x mult`` as ``requant_cycles`` passes of a
        ``requant_digit_bits``-bit digit of ``mult`` (LSB first) with shift-and-add in LUTs (no
        ``$mul`` cell, so no DSP).  Latched when the accumulator completes (``s4_valid``); the
        product is registered as ``s5_prod`` at the end of the last pass, after which the common
        shift / round / clamp stages follow.  Beats come at least ``N/SIMD >= requant_cycles``
        cycles apart, so a latch never meets a running unit (at most its last pass, whose result
        goes to ``s5_prod`` while the latch reloads the registers)."""
        PE, r, T = self.pe, self.requant_digit_bits, self.requant_cycles
        hi_bits = self.acc_bits + r + 1            # |hi + a*d| <= |a| * 2**r
        lo_bits = T * r
        running = Signal(name="rq_running")
        cnt = Signal(range(T), name="rq_cnt")
        base = self.requant_base_shift
        width = self.prod_bits - base
        s5_valid = Signal(name="rq_valid")
        s5_prod = [Signal(signed(width), name=f"rq_{p}") for p in range(PE)]
        s5_shm1 = [Signal(self.requant_var_shift_bits, name=f"shm1b_{p}") for p in range(PE)]
        last = running & (cnt == T - 1)
        m.d.sync += s5_valid.eq(last)
        with m.If(s4_valid):
            m.d.sync += [running.eq(1), cnt.eq(0)]
        with m.Elif(running):
            m.d.sync += [cnt.eq(Mux(cnt == T - 1, 0, cnt + 1)), running.eq(cnt != T - 1)]
        for p in range(PE):
            a = Signal(signed(self.acc_bits), name=f"rqa_{p}")
            hi = Signal(signed(hi_bits), name=f"rqhi_{p}")
            lo = Signal(lo_bits, name=f"rqlo_{p}")
            shm1 = Signal(self.requant_var_shift_bits, name=f"rqshm1_{p}", reset_less=True)
            d = lo[:r]
            terms = [Mux(d[j], a << j, 0) for j in range(r)]
            s = Signal(signed(hi_bits), name=f"rqs_{p}")
            m.d.comb += s.eq(_tree_sum([hi] + terms, hi_bits))
            nhi = s >> r
            nlo = Cat(lo[r:], s[:r]) if lo_bits > r else s[:r]
            with m.If(s4_valid):
                m.d.sync += [a.eq(acc[p]), hi.eq(0), lo.eq(s4_mult[p]), shm1.eq(s4_shm1[p] - base)]
            with m.Elif(running):
                m.d.sync += [hi.eq(nhi), lo.eq(nlo)]
            m.d.sync += [s5_prod[p].eq(Cat(nlo, nhi)[base:self.prod_bits].as_signed()), s5_shm1[p].eq(shm1)]
        return s5_valid, s5_prod, s5_shm1

    def _finish(self, m, fifo, s5_valid, s5_prod, s5_shm1, prod_bits):
        PE = self.pe
        # ---- stage 7: shift by (shift - 1) ---------------------------------------------------
        # (x + 2**(s-1)) >> s == ((x >> (s-1)) + 1) >> 1 (floor division composes), which
        # avoids a variable-position rounding constant.
        s6_valid = Signal()
        s6_q = [Signal(signed(prod_bits), name=f"q_{p}", reset_less=True) for p in range(PE)]
        m.d.sync += s6_valid.eq(s5_valid)
        for p in range(PE):
            m.d.sync += s6_q[p].eq(s5_prod[p] >> s5_shm1[p])

        # ---- stage 8: round, clamp -----------------------------------------------------------
        s7_valid = Signal()
        s7_y = Signal(8 * PE, reset_less=True)
        m.d.sync += s7_valid.eq(s6_valid)
        for p in range(PE):
            r = Signal(signed(prod_bits + 1), name=f"r_{p}")
            m.d.comb += r.eq((s6_q[p] + 1) >> 1)
            y = Mux(r < self.out_lo, self.out_lo, Mux(r > self.out_hi, self.out_hi, r))
            m.d.sync += s7_y[8 * p:8 * p + 8].eq(y[:8])

        # ---- stage 9: output FIFO ------------------------------------------------------------
        # the FIFO's block RAM output goes through a register (StreamRegister: slow BRAM clock-to-out)
        out = m.submodules.out = StreamRegister(width=8 * PE)
        m.d.comb += [
            fifo.w_en.eq(s7_valid), fifo.w_data.eq(s7_y),
            out.i.valid.eq(fifo.r_rdy), out.i.payload.eq(fifo.r_data), fifo.r_en.eq(out.i.ready),
        ]
        wiring.connect(m, out.o, wiring.flipped(self.o))
        return m
