"""FIFO sizing pass: every FIFO depth and output buffer of the design, decided here and only here.

The build plan (squeezehw/plan/lowering.py) calls :func:`size_fire` for each Fire module and
:func:`pool_fifo_depth` for each max-pool; the hardware blocks get the results as constructor
arguments.  (A matrix-vector unit's own output FIFO is ``latency + 1 + out_buffer``, with the
``out_buffer`` decided here and the latency a fact of the unit: hw/mvu.py ``mvu_latency``.)

Fire modules: how deep the skew FIFOs of a Fire module (and its bypass) must be.

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

from ..errors import UserError
from ..hw.fifo import StreamFIFO
from ..hw.mvu import MVU_FIFO_LATENCY


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


# --- max-pool rate smoothing --------------------------------------------------------------------

POOL_FIFO_MARGIN = 2      # beats: one in flight, one in the FIFO's output register


def pool_fifo_depth() -> int:
    """Depth of the FIFO after a max-pool: a margin only.  The pool keeps each finished output row
    in its bank and hands it out at the consumer's pace (hw/maxpool.py, "Emission"), so the row-end
    bursts of ceil-mode pooling need no FIFO of an output row here any more."""
    return POOL_FIFO_MARGIN


# --- Fire modules: everything in one pass ---------------------------------------------------------

@dataclass(frozen=True)
class FireBuffers:
    """Every buffer of one Fire module: the skew FIFOs as built (``fifos``) and their deadlock
    minimum (``required``), the expand units' extra output entries (``e1_out_buffer``,
    ``e3_out_buffer``) and the FIFOs between each expand unit and the concat (0: none)."""
    fifos: FireFifos
    required: FireFifos
    e1_out_buffer: int
    e3_out_buffer: int
    cat_a_depth: int
    cat_b_depth: int


def cat_fifo_depth(pe: int, channels: int, out_lanes: int) -> int:
    """FIFO between an expand unit and the concat: one pixel of that side at the concat's lanes, so
    both sides fill at once (hw/fire.py); none when the unit is as wide as the concat."""
    return 0 if pe == out_lanes else channels // out_lanes + 2


def size_fire(*, width: int, in_ch: int, squeeze_ch: int, e1_ch: int, e3_ch: int, e1_simd: int,
              e1_pe: int, e3_pe: int, out_lanes: int, bypass: str | None, bypass_lanes: int = 0,
              window_extra: int = 0, fifos: FireFifos | None = None, name: str = "Fire") -> FireBuffers:
    """The one sizing pass of a Fire module.  ``fifos`` overrides the skew FIFOs (never below the
    deadlock minimum: FifoDepthError).

    Output buffers: the concat takes a pixel's expand1x1 beats, then its expand3x3 beats: while it
    serves one side, the other side's unit must be able to finish a whole pixel (its own beats) and
    keep going during the other side's burst (the other side's beats at the concat's lanes), or the
    bottleneck expand stalls once per pixel."""
    e1_out_buffer = e1_ch // e1_pe + e3_ch // out_lanes
    e3_out_buffer = e3_ch // e3_pe + e1_ch // out_lanes
    cat_a, cat_b = cat_fifo_depth(e1_pe, e1_ch, out_lanes), cat_fifo_depth(e3_pe, e3_ch, out_lanes)
    # Whole expand1x1 pixels the branch holds behind its skew FIFO while the concat waits for the
    # 3x3 branch: both halves of the MVU's ping-pong input (when it has several folds: the vector
    # in compute, whose output beats are blocked, and the next one), its output FIFO and register
    # (the smallest depth: parallel requantiser, one weight memory; a serial or banked unit holds
    # more, which only leaves the skew FIFO deeper than it must be), and the FIFO and register in
    # front of the concat.  The skew FIFO need not hold these.
    ping_pong = 2 if e1_ch > e1_pe else 0
    out_beats = MVU_FIFO_LATENCY + 1 + e1_out_buffer + 1
    built_cat = StreamFIFO.built_depth(cat_a)
    cat_beats = built_cat + 1 if built_cat else 0
    buffered = ping_pong + out_beats * e1_pe // e1_ch + cat_beats * out_lanes // e1_ch
    sizing = dict(width=width, squeeze_ch=squeeze_ch, e1_simd=e1_simd, in_ch=in_ch, bypass=bypass,
                  bypass_lanes=bypass_lanes, bypass_ch=e1_ch + e3_ch, window_extra=window_extra,
                  e1_buffered_pixels=buffered)
    need = fire_fifos(**sizing)
    built = fifos or fire_fifos(**sizing, throughput=True)
    check_depth(f"{name}.expand1x1 FIFO", built.expand1x1_depth, need.expand1x1_depth)
    if bypass:
        check_depth(f"{name} bypass FIFO", built.bypass_depth, need.bypass_depth)
    return FireBuffers(built, need, e1_out_buffer, e3_out_buffer, cat_a, cat_b)
