"""UART receiver and transmitter (8 data bits, no parity, 1 stop bit), as stream Components.

``UARTTx(clk_hz=, baud=)`` sends each byte it takes on ``i`` on the ``tx`` line (idle high, start
bit 0, data LSB first, stop bit 1).  ``UARTRx(clk_hz=, baud=)`` watches ``rx`` (through a two-flop
synchroniser), samples each bit in its middle and offers every byte with a good stop bit on ``o``.
A UART has no flow control: a byte that arrives while ``o`` still holds the previous one is dropped
and ``overrun`` is strobed for one cycle; a byte whose stop bit reads 0 is dropped and ``frame_error``
is strobed.  The bit period is ``divisor = round(clk_hz / baud)`` clock cycles; the constructors
refuse a divisor below 4 or a baud rate error above 2 %.
"""
from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["uart_divisor", "UARTTx", "UARTRx"]

MAX_BAUD_ERROR = 0.02


def uart_divisor(clk_hz, baud) -> int:
    """Clock cycles per bit, ``round(clk_hz / baud)``; ValueError naming the problem if unusable."""
    for name, v in (("clk_hz", clk_hz), ("baud", baud)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
            raise ValueError(f"UART {name} must be a positive number, not {v!r}")
    divisor = round(clk_hz / baud)
    if divisor < 4:
        raise ValueError(f"UART baud {baud:g} is too fast for a {clk_hz:g} Hz clock: {clk_hz / baud:.2f} "
                         f"cycles per bit, at least 4 are needed (baud <= {clk_hz / 4:g})")
    error = abs(clk_hz / divisor - baud) / baud
    if error > MAX_BAUD_ERROR:
        raise ValueError(f"UART baud {baud:g} cannot be made from a {clk_hz:g} Hz clock: the nearest "
                         f"divisor {divisor} gives {clk_hz / divisor:.1f} baud ({100 * error:.1f} % off, "
                         f"at most {100 * MAX_BAUD_ERROR:g} % allowed)")
    return divisor


class UARTTx(wiring.Component):
    """``i``: bytes to send (taken when the line is idle); ``tx``: the serial line; ``busy``."""

    def __init__(self, *, clk_hz, baud):
        self.clk_hz, self.baud = clk_hz, baud
        self.divisor = uart_divisor(clk_hz, baud)
        super().__init__({"i": In(stream.Signature(8)), "tx": Out(1, init=1), "busy": Out(1)})

    def elaborate(self, platform):
        m = Module()
        count = Signal(range(self.divisor))
        shift = Signal(10, init=0x3FF)        # stop, data[7:0], start; shifted out LSB first
        bits = Signal(range(11))              # bits still to send
        m.d.comb += [self.i.ready.eq(bits == 0), self.busy.eq(bits != 0)]
        with m.If(bits == 0):
            with m.If(self.i.valid):
                m.d.sync += [shift.eq((1 << 9) | (self.i.payload << 1)), bits.eq(10),
                             count.eq(self.divisor - 1), self.tx.eq(0)]
        with m.Elif(count == 0):
            m.d.sync += [count.eq(self.divisor - 1), bits.eq(bits - 1)]
            with m.If(bits == 1):             # the stop bit has lasted a whole period: idle
                m.d.sync += self.tx.eq(1)
            with m.Else():
                m.d.sync += [self.tx.eq(shift[1]), shift.eq(shift >> 1)]
        with m.Else():
            m.d.sync += count.eq(count - 1)
        return m


class UARTRx(wiring.Component):
    """``rx``: the serial line (asynchronous); ``o``: received bytes; ``overrun``, ``frame_error``:
    one-cycle strobes when a byte is dropped."""

    def __init__(self, *, clk_hz, baud):
        self.clk_hz, self.baud = clk_hz, baud
        self.divisor = uart_divisor(clk_hz, baud)
        super().__init__({"rx": In(1, init=1), "o": Out(stream.Signature(8)),
                          "overrun": Out(1), "frame_error": Out(1)})

    def elaborate(self, platform):
        m = Module()
        rx = Signal(init=1)
        m.submodules.sync_rx = FFSynchronizer(self.rx, rx, init=1)
        d = self.divisor
        count = Signal(range(d))
        bit = Signal(range(8))
        data = Signal(8)
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        m.d.sync += [self.overrun.eq(0), self.frame_error.eq(0)]
        with m.If(count != 0):
            m.d.sync += count.eq(count - 1)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(~rx):
                    m.d.sync += count.eq(d // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                with m.If(count == 0):
                    with m.If(rx):                # a glitch, not a start bit
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += [count.eq(d - 1), bit.eq(0)]
                        m.next = "DATA"
            with m.State("DATA"):
                with m.If(count == 0):
                    m.d.sync += [data.eq((rx << 7) | (data >> 1)), count.eq(d - 1), bit.eq(bit + 1)]
                    with m.If(bit == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(count == 0):
                    # back to IDLE in the middle of the stop bit, ready for the next start edge
                    m.next = "IDLE"
                    with m.If(~rx):
                        m.d.sync += self.frame_error.eq(1)
                    with m.Elif(self.o.valid & ~self.o.ready):
                        m.d.sync += self.overrun.eq(1)
                    with m.Else():
                        m.d.sync += [self.o.payload.eq(data), self.o.valid.eq(1)]
        return m
