"""The network head: final conv (MVU, ReLU, uint8) -> global sum pool -> logits and class.

Input: the head conv's input vectors, ``simd`` lanes per beat, one vector per output pixel in
raster order (a pixel's channels for the usual 1x1 head conv; a sliding window's (ky, kx, c) values
for a KxK one).  Output, per frame: ``classes`` beats of one logit each (class 0 first), then one
beat with the argmax class (docs/numerics.md, "Head").  Frames may follow back to back.
"""
from __future__ import annotations

from amaranth.hdl import Module, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..errors import UserError
from ..quant.intmodel import QHead
from .global_pool import GlobalSumArgmax
from .mvu import MVU

__all__ = ["Head"]


class Head(wiring.Component):
    """MVU(head conv, ReLU) -> GlobalSumArgmax.  ``pixels``: the head conv's output pixels (H*W).
    ``requant``, ``multiplier``, ``timing_registers``: the MVU's requantiser mode, multiplier
    primitive and issue-flag registers (hw/mvu.py)."""

    def __init__(self, *, qhead: QHead, pixels, simd, pe, requant="parallel", multiplier="generic",
                 weight_code=None, weight_bank_depth=None, timing_registers=True):
        try:
            if not isinstance(qhead, QHead):
                raise UserError(f"Head: qhead must be a QHead, got {type(qhead).__name__}")
            if not qhead.conv.relu:
                raise UserError(f"{qhead.name}: the head conv must have ReLU (the global pool sums "
                                "uint8 values); re-quantize the model with a ReLU after the final conv")
            if isinstance(pixels, bool) or not isinstance(pixels, int) or pixels < 1:
                raise UserError(f"{qhead.name}: pixels must be a positive integer, got {pixels!r}")
            self.mvu = MVU.from_qconv(qhead.conv, simd=simd, pe=pe, name=qhead.conv.name, requant=requant,
                                      multiplier=multiplier, weight_code=weight_code,
                                      weight_bank_depth=weight_bank_depth,
                                      timing_registers=timing_registers)
            self.pool = GlobalSumArgmax(channels=qhead.classes, lanes=pe, pixels=pixels,
                                        logit_bits=(255 * pixels).bit_length())
        except UserError:
            self._MustUse__silence = True
            for sub in ("mvu", "pool"):
                if hasattr(self, sub):
                    getattr(self, sub)._MustUse__silence = True
            raise
        self.name = qhead.name
        self.pixels = pixels
        self.classes = qhead.classes
        self.logit_bits = self.pool.logit_bits
        self.class_bits = self.pool.class_bits
        self.cycles_per_frame = pixels * self.mvu.cycles_per_vector
        self.multipliers = self.mvu.multipliers
        super().__init__({
            "i": In(stream.Signature(unsigned(8 * simd))),
            "o": Out(stream.Signature(unsigned(self.pool.out_bits))),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.mvu = self.mvu
        m.submodules.pool = self.pool
        wiring.connect(m, wiring.flipped(self.i), self.mvu.i)
        wiring.connect(m, self.mvu.o, self.pool.i)
        wiring.connect(m, self.pool.o, wiring.flipped(self.o))
        return m
