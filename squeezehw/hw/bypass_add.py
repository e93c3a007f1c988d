"""BypassAdd: the element-wise add of a Fire module's output and its bypass, with requantisation.

Per lane (docs/numerics.md, golden.bypass_add):
``o = clamp((a*mult_a + b*mult_b + 2**(shift-1)) >> shift, 0, 255)``, ``a`` uint8, ``b`` uint8
(simple bypass) or int8 (complex bypass, the 1x1 conv without ReLU).  Beats of ``a`` and ``b`` are
paired in order (both streams carry the same pixels in the same order and lane layout).

Pipeline: 3 stages (the input pair registered, products, then the sum ``a*mult_a + b*mult_b``;
rounding, shift and clamp sit between that register and the output StreamRegister) so the
multipliers, the adder and the clamp are on separate register stages.  Each stage holds a beat while the next one is full and stalled,
and moves on otherwise, so it takes one beat pair per cycle (full throughput) under any traffic.
Latency 3 cycles.
"""
from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .errors import FoldingError
from .multiplier import RegisteredMultiplier, check_primitive
from .stream_register import StreamRegister

__all__ = ["BypassAdd"]


class BypassAdd(wiring.Component):
    """Ports: ``a``, ``b`` (in streams, unsigned(8*lanes)), ``o`` (out stream, unsigned(8*lanes)).

    Attributes: ``latency`` = 4, ``capacity`` = 5 beats in flight, ``memory_bits`` = 0 (pipeline
    registers only), ``sum_bits`` = signed width of the exact sum (8 + 16 + 2 bits per the
    numerics contract).
    """

    def __init__(self, *, lanes: int, mult_a: int, mult_b: int, shift: int, b_signed: bool,
                 multiplier: str = "generic"):
        if not isinstance(lanes, int) or lanes < 1:
            raise FoldingError(f"BypassAdd: lanes={lanes!r} must be a positive integer")
        for name, v in (("mult_a", mult_a), ("mult_b", mult_b)):
            if not isinstance(v, int) or not 0 <= v < 2 ** 16:
                raise FoldingError(f"BypassAdd: {name}={v!r} must be an unsigned 16-bit integer "
                                   f"(0..65535); requantise with intmodel.requant_params")
        if not isinstance(shift, int) or not 1 <= shift <= 48:
            raise FoldingError(f"BypassAdd: shift={shift!r} must be an integer in 1..48")
        self.lanes = lanes
        self.mult_a = mult_a
        self.mult_b = mult_b
        self.shift = shift
        self.b_signed = bool(b_signed)
        self.multiplier = check_primitive(multiplier)     # hw/multiplier.py's primitive
        # three pipeline stages, then a StreamRegister: the consumer's ready stops there instead of
        # rippling through the stage enables into both producers (fork -> add -> expand FIFO was
        # the ULX3S critical path at 88 MHz)
        self.latency = 3 + StreamRegister.LATENCY
        self.capacity = 3 + StreamRegister.CAPACITY
        self.memory_bits = 0
        # 8 + 16 + 2 bits hold the exact sum (numerics.md); the rounding constant 2**(shift-1)
        # needs more when the shift is large.
        self.sum_bits = max(8 + 16 + 2, shift + 2)
        sig = stream.Signature(8 * lanes)
        super().__init__({"a": In(sig), "b": In(sig), "o": Out(sig)})

    @classmethod
    def from_qadd(cls, q, *, lanes: int, multiplier: str = "generic") -> "BypassAdd":
        """From an ``intmodel.QAdd``: ``b`` is int8 when the bypass has a conv without ReLU."""
        b_signed = q.conv is not None and not q.conv.relu
        return cls(lanes=lanes, mult_a=q.mult_a, mult_b=q.mult_b, shift=q.shift, b_signed=b_signed,
                   multiplier=multiplier)

    def elaborate(self, platform):
        m = Module()
        L = self.lanes
        # Stage 0: the input pair, registered beside the multipliers (the join's mux and the
        # route to the DSP column would otherwise precede the multiply).  Stage 1: products.
        # Stage 2: output lanes.  v0/v1/v2 = stage holds a beat.
        v0, v1 = Signal(), Signal()
        pa = [Signal(unsigned(8 + 16), name=f"pa{k}", reset_less=True) for k in range(L)]
        pb = [Signal(signed(8 + 16 + 1), name=f"pb{k}", reset_less=True) for k in range(L)]
        out = Signal(8 * L)
        v2 = Signal()
        adv2 = Signal()  # stage 2 takes a new beat (or empties) this cycle
        adv1 = Signal()
        adv0 = Signal()
        oreg = m.submodules.oreg = StreamRegister(width=8 * L)
        m.d.comb += [
            oreg.i.valid.eq(v2),
            oreg.i.payload.eq(out),
            adv2.eq(~v2 | oreg.i.ready),
            adv1.eq(~v1 | adv2),
            adv0.eq(~v0 | adv1),
            # join: take a pair only when both are present and stage 0 can move
            self.a.ready.eq(adv0 & self.b.valid),
            self.b.ready.eq(adv0 & self.a.valid),
        ]
        with m.If(adv0):
            m.d.sync += v0.eq(self.a.valid & self.b.valid)
        # the stage-0 registers are the multipliers' operand registers (on ECP5 inside the DSP)
        b_shape = signed(8) if self.b_signed else unsigned(8)
        for k in range(L):
            for side, payload, shape, mult, product in (("a", self.a.payload, unsigned(8), self.mult_a, pa[k]),
                                                        ("b", self.b.payload, b_shape, self.mult_b, pb[k])):
                mul = RegisteredMultiplier(shape, unsigned(16), out_reg=False, name=f"mul_{side}{k}",
                                           primitive=self.multiplier)
                m.submodules[f"mul_{side}{k}"] = mul
                m.d.comb += [mul.a.eq(payload[8 * k:8 * k + 8]), mul.b.eq(mult), mul.ce.eq(adv0)]
                with m.If(adv1):
                    m.d.sync += product.eq(mul.p)
        with m.If(adv1):
            m.d.sync += v1.eq(v0)
        # Stage 2 registers the sum pa + pb; rounding, shift and clamp follow it on the way into
        # the output StreamRegister (the three-operand add with the clamp behind it was the
        # ULX3S critical path at 89 MHz).  Adding 2**(shift-1) never carries out of the bits
        # below shift-1, so only the sum's bits from shift-1 up are kept.
        lo_bit = self.shift - 1
        sums = [Signal(signed(self.sum_bits - lo_bit), name=f"sum{k}", reset_less=True) for k in range(L)]
        with m.If(adv2):
            m.d.sync += v2.eq(v1)
            for k in range(L):
                total = Signal(signed(self.sum_bits), name=f"total{k}")
                m.d.comb += total.eq(pa[k] + pb[k])
                m.d.sync += sums[k].eq(total[lo_bit:].as_signed())
        lanes = []
        for k in range(L):
            q = Signal(signed(self.sum_bits - lo_bit), name=f"q{k}")
            m.d.comb += q.eq((sums[k] + 1) >> 1)  # (sum + 2**(shift-1)) >> shift: floor
            lanes.append(Mux(q < 0, 0, Mux(q > 255, 255, q[:8])))
        m.d.comb += out.eq(Cat(*lanes))
        wiring.connect(m, oreg.o, wiring.flipped(self.o))
        return m
