"""Host side of the UART protocol (``boards/protocol.py``): send an image, read and decode the reply.

:class:`BoardClient` works on any object with ``read(n)`` / ``write(data)`` (a ``serial.Serial``
from :func:`open_serial`, or :class:`EmulatedBoard`, which answers like a board would, using the
golden model).  ``classify(image)`` returns a :class:`BoardReply` (every logit, the class, the
board's status flags) or raises :class:`BoardError` / :class:`BoardTimeoutError` with what was
received so far and what to check.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .errors import UserError

__all__ = ["BoardError", "BoardTimeoutError", "BoardReply", "BoardClient", "EmulatedBoard", "open_serial",
           "protocol"]


def protocol():
    """The wire format, ``squeezehw.boards.protocol`` (boards/protocol.py, beside the board tops that
    speak it); imported on first use because it pulls in Amaranth."""
    from .boards import protocol as p
    return p


class BoardError(UserError):
    """The board answered something unexpected, or reported an error."""


class BoardTimeoutError(BoardError):
    """The board did not answer (in full) in time."""


@dataclass
class BoardReply:
    logits: list[int]
    cls: int
    status: int
    beat_bytes: int
    seconds: float
    junk_bytes: int = 0          # bytes before the reply header that were skipped

    def as_dict(self) -> dict:
        return {"class": self.cls, "logits": self.logits, "status": self.status,
                "beat_bytes": self.beat_bytes, "seconds": round(self.seconds, 4), "junk_bytes": self.junk_bytes}


class BoardClient:
    """Talks to a board running ``boards.top.BoardTop`` for a model with ``classes`` classes.

    ``timeout``: seconds allowed for the whole exchange beyond the time the bytes need on the wire
    at ``baud`` (10 bits per byte)."""

    def __init__(self, port, *, classes: int, baud: int = 115200, timeout: float = 5.0):
        if not hasattr(port, "read") or not hasattr(port, "write"):
            raise TypeError(f"port must have read() and write() (a serial.Serial), not {type(port).__name__}")
        if not isinstance(classes, int) or classes < 1:
            raise ValueError(f"classes must be a positive integer, not {classes!r}")
        if not timeout > 0 or not baud > 0:
            raise ValueError(f"timeout and baud must be positive, got timeout={timeout!r}, baud={baud!r}")
        self.port, self.classes, self.baud, self.timeout = port, classes, baud, timeout

    def classify(self, image: np.ndarray) -> BoardReply:
        p = protocol()
        request = p.encode_request(np.asarray(image))
        t0 = time.monotonic()
        wire = (len(request) + p.HEADER_BYTES + 4 * (self.classes + 1)) * 10 / self.baud
        deadline = t0 + self.timeout + 2 * wire
        self.port.write(request)
        if hasattr(self.port, "flush"):
            self.port.flush()
        # find the reply magic, skipping anything before it (noise, a stale reply's tail)
        window, junk = b"", 0
        while window != p.REPLY_MAGIC:
            b = self._read(1, deadline, "the reply header", window)
            window = (window + b)[-len(p.REPLY_MAGIC):]
            junk += 1
        junk -= len(p.REPLY_MAGIC)
        rest = self._read(p.HEADER_BYTES - len(p.REPLY_MAGIC), deadline, "the reply header", window)
        head = p.parse_reply_header(p.REPLY_MAGIC + rest)
        if head.status & p.STATUS_BAD_LENGTH:
            raise BoardError(f"the board rejected the request: {head.status_text()}; it expects a different "
                             f"image size ({len(request) - 8} bytes were sent): is the bitstream built for "
                             f"this model?")
        if head.beats != self.classes + 1 or head.beat_bytes < 1:
            raise BoardError(f"the board replied with {head.beats} values of {head.beat_bytes} bytes, expected "
                             f"{self.classes + 1} (classes + 1): is the bitstream built for this model?")
        body = self._read(head.beats * head.beat_bytes, deadline, f"{head.beats} reply values", b"")
        values = [int.from_bytes(body[k:k + head.beat_bytes], "little")
                  for k in range(0, len(body), head.beat_bytes)]
        if head.status:
            raise BoardError(f"the board reports: {head.status_text()} (status 0x{head.status:02x}); the result "
                             f"may be wrong: check the baud rate ({self.baud}) and retry")
        if values[-1] >= self.classes:
            raise BoardError(f"the board's class index {values[-1]} is out of range 0..{self.classes - 1}")
        return BoardReply(values[:-1], values[-1], head.status, head.beat_bytes, time.monotonic() - t0, junk)

    def _read(self, n: int, deadline: float, what: str, got: bytes) -> bytes:
        buf = b""
        while len(buf) < n:
            if time.monotonic() > deadline:
                have = got + buf
                raise BoardTimeoutError(
                    f"timed out waiting for {what} ({len(buf)} of {n} bytes"
                    + (f"; last bytes {have[-16:]!r}" if have else "; nothing received")
                    + f"): is the bitstream loaded, the port right and the baud rate {self.baud} the board's?")
            chunk = self.port.read(n - len(buf))
            if chunk:
                buf += bytes(chunk)
            else:
                time.sleep(0.001)
        return buf


def open_serial(port: str, *, baud: int, timeout: float = 0.1):
    """A ``serial.Serial`` at ``baud`` 8N1 with a short read timeout (BoardClient keeps the deadline)."""
    try:
        import serial
    except ImportError:
        raise UserError("talking to a board needs pyserial: pip install pyserial") from None
    try:
        s = serial.Serial(port, baudrate=baud, bytesize=8, parity="N", stopbits=1, timeout=timeout)
    except (serial.SerialException, OSError, ValueError) as e:
        raise UserError(f"cannot open serial port {port!r} at {baud} baud: {e}") from None
    s.reset_input_buffer()
    return s


@dataclass
class EmulatedBoard:
    """A serial-port stand-in that answers like ``BoardTop`` running ``model``, using the golden model:
    it looks for ``SQZI`` headers, checks the length, and queues the reply (``beat_bytes`` per value).
    ``mute=True`` never answers (for timeout tests); ``noise`` is sent before each reply."""
    model: object
    beat_bytes: int = 2
    mute: bool = False
    noise: bytes = b""
    status: int = 0
    _rx: bytearray = field(default_factory=bytearray)
    _tx: bytearray = field(default_factory=bytearray)
    requests: int = 0

    def write(self, data) -> int:
        self._rx += bytes(data)
        self._process()
        return len(data)

    def read(self, n: int = 1) -> bytes:
        out = bytes(self._tx[:n])
        del self._tx[:n]
        return out

    def flush(self):
        pass

    @property
    def in_waiting(self) -> int:
        return len(self._tx)

    def _process(self):
        from .quant import golden
        p = protocol()
        m = self.model
        size = m.in_ch * m.height * m.width
        while True:
            k = self._rx.find(p.REQUEST_MAGIC)
            if k < 0:
                del self._rx[:max(0, len(self._rx) - 3)]
                return
            if len(self._rx) < k + 8:
                return
            length = int.from_bytes(self._rx[k + 4:k + 8], "little")
            if length != size:
                del self._rx[:k + 8]
                if not self.mute:
                    self._tx += p.encode_reply([], beat_bytes=self.beat_bytes, status=self.status | p.STATUS_BAD_LENGTH)
                continue
            if len(self._rx) < k + 8 + size:
                return
            data = bytes(self._rx[k + 8:k + 8 + size])
            del self._rx[:k + 8 + size]
            self.requests += 1
            img = np.frombuffer(data, np.uint8).reshape(m.height, m.width, m.in_ch).transpose(2, 0, 1)
            r = golden.run(m, img[None])
            if not self.mute:
                self._tx += self.noise + p.encode_reply([*r.logits[0], r.classes[0]], beat_bytes=self.beat_bytes,
                                                        status=self.status)
