"""FIFO sizing pass: how deep the skew FIFOs of a Fire module (and its bypass) must be.

Inside a Fire module the squeeze output is forked into the expand1x1 branch and the expand3x3
branch, and the concat takes pixel p of expand1x1 and then pixel p of expand3x3.  The 3x3 window
can finish output pixel p = (y, x) only after it has received squeeze pixel (y+1, x+1), i.e.
``W + 1`` pixels later in raster order (plus the window's own extra look-ahead).  The fork hands
each squeeze beat to both branches, so meanwhile the 1x1 branch must hold those ``W + 1 + extra``
pixels; if it cannot, the fork stalls, the window starves, and the design deadlocks.  The same
argument sizes the bypass FIFO (it must hold every Fire input pixel from p up to the last one the
main path needs before it can emit p).

The depth counts FIFO entries (beats of the branch's lane width).  The pass is conservative in one
way only: it ignores the few beats that the pipeline registers of the 1x1 branch also hold.  The
test suite measures in simulation how much slack that leaves (tests/hw/test_fire.py).

Deadlock-free is not yet full speed.  The FIFO that bridges two parallel paths bounds how many
pixels can be in flight on the other path (Little's law: in flight = rate x latency).  At the
minimum depth the long path may hold only the ``skew`` pixels its window needs, so every pixel
would also have to cross the long path's pipeline (the squeeze's and expand3x3's ping-pong input
buffers and compute, one pixel period each, and the output FIFOs) with nothing else in flight, and
the module would run at a fraction of its rate.  ``fire_fifos(..., throughput=True)`` (what the
builder instantiates) therefore adds ``THROUGHPUT_PIXELS`` pixels to both FIFOs: two vectors in
the squeeze's input buffer, one in expand3x3's, one being computed and drained.  The builder's
check still only refuses depths below the deadlock minimum.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from .errors import UserError


class FifoDepthError(UserError):
    """A FIFO requested shallower than the sizing pass's minimum: the design would deadlock."""


@dataclass(frozen=True)
class FireFifos:
    expand1x1_depth: int        # beats of expand1x1's input lanes
    expand1x1_width: int        # bits per beat
    bypass_depth: int           # beats on the bypass path (0 = no bypass)
    bypass_width: int
    skew_pixels: int            # squeeze-output pixels the 1x1 branch must absorb

    @property
    def memory_bits(self) -> int:
        return self.expand1x1_depth * self.expand1x1_width + self.bypass_depth * self.bypass_width

    def as_dict(self) -> dict:
        return {**asdict(self), "memory_bits": self.memory_bits}


def window_skew_pixels(width: int, kernel: int = 3, padding: int = 1, window_extra: int = 0) -> int:
    """Input pixels (raster order) between output pixel p and the last input the window needs for it."""
    return (kernel - 1 - padding) * width + (kernel - 1 - padding) + window_extra


MARGIN_BEATS = 1   # one beat in flight through the fork (the StreamFIFO's output register adds slots of its own)
THROUGHPUT_PIXELS = 4   # pixels in flight on the long path beyond the skew (module docstring)


def fire_fifos(*, width: int, squeeze_ch: int, e1_simd: int, in_ch: int, bypass: str | None,
               bypass_lanes: int = 0, bypass_ch: int = 0, window_extra: int = 0,
               e1_buffered_pixels: int = 0, throughput: bool = False) -> FireFifos:
    """Depths for one Fire module: the deadlock minimum, or with ``throughput`` the depths that
    also sustain the full rate (``THROUGHPUT_PIXELS`` more pixels, see the module docstring).

    ``bypass``: None, "simple" (the FIFO holds Fire input beats of ``bypass_lanes`` lanes) or
    "complex" (it holds the bypass conv's output beats: ``bypass_ch`` channels in ``bypass_lanes``).
    ``e1_buffered_pixels``: whole pixels the expand1x1 branch holds behind the FIFO (the MVU's
    ping-pong input, its output FIFO, the FIFO before the concat: FireEngine._e1_buffered_pixels),
    which the FIFO need not hold.
    """
    skew = window_skew_pixels(width, window_extra=window_extra)
    extra = THROUGHPUT_PIXELS if throughput else 0
    e1_depth = max(0, skew + extra - e1_buffered_pixels) * (squeeze_ch // e1_simd) + MARGIN_BEATS
    if bypass is None:
        b_depth, b_width = 0, 0
    else:
        ch = in_ch if bypass == "simple" else bypass_ch
        # the add needs pixel p of both paths; the main path needs input p + skew before it can
        # emit p, so the bypass path holds pixels p .. p + skew (skew + 1 pixels)
        b_depth = (skew + 1 + extra) * (ch // bypass_lanes) + MARGIN_BEATS
        b_width = 8 * bypass_lanes
    return FireFifos(e1_depth, 8 * e1_simd, b_depth, b_width, skew)


def check_depth(name: str, requested: int, minimum: int) -> None:
    if requested < minimum:
        raise FifoDepthError(f"{name}: FIFO depth {requested} is below the {minimum} entries the sizing "
                             f"pass requires; the Fire module would deadlock. Use >= {minimum}.")
