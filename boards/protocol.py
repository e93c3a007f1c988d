"""The host <-> board framing protocol over a UART, in Python and in hardware.

Request (host -> board): ``REQUEST_MAGIC`` (4 bytes ``SQZI``), the image's byte count as an
unsigned 32-bit little-endian number, then the image bytes in the accelerator's input order (raster
order, each pixel's channels in order: ``image.transpose(1, 2, 0).tobytes()`` for a (C, H, W) array).

Reply (board -> host): ``REPLY_MAGIC`` (4 bytes ``SQZO``), a status byte (``STATUS_*`` flags), the
bytes per value ``beat_bytes`` (one byte), the number of values ``beats`` (unsigned 16-bit LE), then
``beats`` values of ``beat_bytes`` bytes each, little-endian: every logit (class 0 first) and then
the class index.  ``beats`` is ``classes + 1`` for a frame, 0 for an error reply.

Status flags (sticky since the previous reply): ``STATUS_OVERRUN`` (the board dropped a received byte
because its input buffer was full), ``STATUS_FRAME_ERROR`` (a byte had a bad stop bit: wrong baud
rate?), ``STATUS_BAD_LENGTH`` (the request's length is not the model's image size; the board sends an
error reply with no values and goes back to looking for a request header, ignoring the bytes that
follow until the next ``SQZI``).

Hardware: :class:`RequestParser` (UART bytes -> accelerator input beats of ``lanes`` bytes) and
:class:`ReplySerializer` (accelerator output beats -> reply bytes).  Python: :func:`encode_request`,
:func:`image_bytes`, :func:`parse_reply_header`, :func:`encode_reply` (what a board sends; used by
the emulated board in :mod:`squeezehw.host`).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
from amaranth import Array, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["REQUEST_MAGIC", "REPLY_MAGIC", "HEADER_BYTES", "STATUS_OVERRUN", "STATUS_FRAME_ERROR",
           "STATUS_BAD_LENGTH", "beat_bytes_for", "image_bytes", "encode_request", "ReplyHeader",
           "parse_reply_header", "encode_reply", "RequestParser", "ReplySerializer"]

REQUEST_MAGIC = b"SQZI"
REPLY_MAGIC = b"SQZO"
HEADER_BYTES = 8
STATUS_OVERRUN = 0x01
STATUS_FRAME_ERROR = 0x02
STATUS_BAD_LENGTH = 0x04
STATUS_NAMES = {STATUS_OVERRUN: "receive overrun (bytes dropped)",
                STATUS_FRAME_ERROR: "UART framing error (baud rate mismatch?)",
                STATUS_BAD_LENGTH: "request length is not the model's image size"}


def beat_bytes_for(width: int) -> int:
    """Bytes per reply value for an output stream ``width`` bits wide."""
    return max(1, (int(width) + 7) // 8)


def image_bytes(image: np.ndarray) -> bytes:
    """A uint8 (C, H, W) image as the accelerator's input byte order (raster, channels in order)."""
    x = np.asarray(image)
    if x.dtype != np.uint8 or x.ndim != 3:
        raise ValueError(f"image must be a uint8 (C, H, W) array, got {x.dtype} {x.shape}")
    return np.ascontiguousarray(x.transpose(1, 2, 0)).tobytes()


def encode_request(image: np.ndarray) -> bytes:
    data = image_bytes(image)
    return REQUEST_MAGIC + struct.pack("<I", len(data)) + data


@dataclass(frozen=True)
class ReplyHeader:
    status: int
    beat_bytes: int
    beats: int

    def status_text(self) -> str:
        return ", ".join(t for f, t in STATUS_NAMES.items() if self.status & f) or "ok"


def parse_reply_header(data: bytes) -> ReplyHeader:
    if len(data) != HEADER_BYTES or data[:4] != REPLY_MAGIC:
        raise ValueError(f"not a reply header: {data!r}")
    status, beat_bytes, beats = struct.unpack("<BBH", data[4:])
    return ReplyHeader(status, beat_bytes, beats)


def encode_reply(values, *, beat_bytes: int, status: int = 0) -> bytes:
    values = [int(v) for v in values]
    out = REPLY_MAGIC + struct.pack("<BBH", status, beat_bytes, len(values))
    return out + b"".join(v.to_bytes(beat_bytes, "little") for v in values)


class RequestParser(wiring.Component):
    """Finds request headers in the received bytes ``i`` and packs the following ``frame_bytes``
    image bytes into beats of ``lanes`` bytes (byte 0 in the least significant bits) on ``o``.

    A header whose length is not ``frame_bytes`` raises ``bad_length`` (held until ``bad_length_ack``)
    and the parser goes back to looking for ``SQZI``.  ``busy`` is high inside a frame.
    """

    def __init__(self, *, frame_bytes: int, lanes: int):
        if not isinstance(lanes, int) or lanes < 1:
            raise ValueError(f"lanes must be a positive integer, not {lanes!r}")
        if not isinstance(frame_bytes, int) or frame_bytes < 1 or frame_bytes % lanes or frame_bytes >= 1 << 32:
            raise ValueError(f"frame_bytes must be a positive multiple of lanes ({lanes}) below 2**32, "
                             f"not {frame_bytes!r}")
        self.frame_bytes, self.lanes = frame_bytes, lanes
        super().__init__({"i": In(stream.Signature(8)), "o": Out(stream.Signature(8 * lanes)),
                          "bad_length": Out(1), "bad_length_ack": In(1), "busy": Out(1)})

    def elaborate(self, platform):
        m = Module()
        magic = Array(Const(b, 8) for b in REQUEST_MAGIC)
        length = Const(self.frame_bytes, 32)
        idx = Signal(range(8))                 # header byte index
        ok = Signal()                          # length bytes matched so far
        remaining = Signal(range(self.frame_bytes + 1))
        lane = Signal(range(self.lanes))
        beat = Signal(8 * self.lanes)
        with m.If(self.bad_length_ack):
            m.d.sync += self.bad_length.eq(0)
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.FSM():
            with m.State("HEADER"):
                m.d.comb += self.i.ready.eq(~self.bad_length)
                with m.If(self.i.valid & self.i.ready):
                    with m.If(idx < 4):
                        with m.If(self.i.payload == magic[idx[:2]]):
                            m.d.sync += idx.eq(idx + 1)
                        with m.Elif(self.i.payload == magic[0]):
                            m.d.sync += idx.eq(1)
                        with m.Else():
                            m.d.sync += idx.eq(0)
                        m.d.sync += ok.eq(1)
                    with m.Else():
                        byte = length.word_select(idx[:2], 8)
                        good = ok & (self.i.payload == byte)
                        m.d.sync += [ok.eq(good), idx.eq(idx + 1)]
                        with m.If(idx == 7):
                            m.d.sync += idx.eq(0)
                            with m.If(good):
                                m.d.sync += [remaining.eq(self.frame_bytes), lane.eq(0)]
                                m.next = "DATA"
                            with m.Else():
                                m.d.sync += self.bad_length.eq(1)
            with m.State("DATA"):
                m.d.comb += [self.busy.eq(1), self.i.ready.eq(~self.o.valid | self.o.ready)]
                with m.If(self.i.valid & self.i.ready):
                    new = Signal(8 * self.lanes)
                    if self.lanes == 1:
                        m.d.comb += new.eq(self.i.payload)
                    else:
                        m.d.comb += new.eq((self.i.payload << (8 * (self.lanes - 1))) | (beat >> 8))
                    m.d.sync += [beat.eq(new), remaining.eq(remaining - 1)]
                    with m.If(lane == self.lanes - 1):
                        m.d.sync += [lane.eq(0), self.o.payload.eq(new), self.o.valid.eq(1)]
                    with m.Else():
                        m.d.sync += lane.eq(lane + 1)
                    with m.If(remaining == 1):
                        m.next = "HEADER"
        return m


class ReplySerializer(wiring.Component):
    """Turns each frame's ``beats`` output beats (``width`` bits) into a reply: header, then each
    beat as ``beat_bytes_for(width)`` bytes little-endian, on ``o``.

    ``status`` (flags) is latched into the header and ``status_clear`` pulsed when a reply starts;
    ``error`` (with ``error_ack``) requests an error reply (status | STATUS_BAD_LENGTH, no values).
    """

    def __init__(self, *, beats: int, width: int):
        if not isinstance(beats, int) or not 1 <= beats < 1 << 16:
            raise ValueError(f"beats per frame must be an integer in 1..65535, not {beats!r}")
        if not isinstance(width, int) or width < 1:
            raise ValueError(f"width must be a positive integer, not {width!r}")
        self.beats, self.width = beats, width
        self.beat_bytes = beat_bytes_for(width)
        super().__init__({"i": In(stream.Signature(width)), "o": Out(stream.Signature(8)),
                          "status": In(8), "status_clear": Out(1), "error": In(1), "error_ack": Out(1),
                          "busy": Out(1)})

    def elaborate(self, platform):
        m = Module()
        nb = self.beat_bytes
        status = Signal(8)
        is_error = Signal()
        hdr = Signal(range(HEADER_BYTES))
        byte = Signal(range(nb))
        beat = Signal(range(self.beats))
        n_values = Signal(16)                  # `beats` in the header: 0 for an error reply
        m.d.comb += n_values.eq(Mux(is_error, 0, self.beats))
        header = Array([*(Const(b, 8) for b in REPLY_MAGIC), status, Const(nb, 8),
                        n_values[:8], n_values[8:]])
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.error):
                    m.d.comb += [self.error_ack.eq(1), self.status_clear.eq(1)]
                    m.d.sync += [status.eq(self.status | STATUS_BAD_LENGTH), is_error.eq(1), hdr.eq(0)]
                    m.next = "HEADER"
                with m.Elif(self.i.valid):
                    m.d.comb += self.status_clear.eq(1)
                    m.d.sync += [status.eq(self.status), is_error.eq(0), hdr.eq(0)]
                    m.next = "HEADER"
            with m.State("HEADER"):
                m.d.comb += [self.busy.eq(1), self.o.valid.eq(1), self.o.payload.eq(header[hdr])]
                with m.If(self.o.ready):
                    m.d.sync += hdr.eq(hdr + 1)
                    with m.If(hdr == HEADER_BYTES - 1):
                        m.d.sync += [byte.eq(0), beat.eq(0)]
                        m.next = "IDLE"
                        with m.If(~is_error):
                            m.next = "DATA"
            with m.State("DATA"):
                shifted = Signal(8 * nb)
                m.d.comb += [shifted.eq(self.i.payload >> (byte * 8)), self.busy.eq(1),
                             self.o.valid.eq(self.i.valid), self.o.payload.eq(shifted[:8])]
                with m.If(self.o.valid & self.o.ready):
                    m.d.sync += byte.eq(byte + 1)
                    with m.If(byte == nb - 1):
                        m.d.comb += self.i.ready.eq(1)
                        m.d.sync += [byte.eq(0), beat.eq(beat + 1)]
                        with m.If(beat == self.beats - 1):
                            m.next = "IDLE"
        return m
