"""UART RX/TX and the protocol blocks in Amaranth's simulator."""

import pytest
from amaranth import Module
from amaranth.lib import wiring
from amaranth.sim import Simulator
from squeezehw.boards import protocol
from squeezehw.boards.uart import UARTRx, UARTTx, uart_divisor


def test_divisor_validation():
    assert uart_divisor(50e6, 115200) == 434
    assert uart_divisor(12e6, 3e6) == 4
    with pytest.raises(ValueError, match="too fast"):
        uart_divisor(12e6, 4e6)
    with pytest.raises(ValueError, match="% off"):
        uart_divisor(1e6, 190_000)     # 5.26 cycles per bit -> 5 -> 5 % error
    for bad in (0, -1, "9600", True):
        with pytest.raises(ValueError, match="positive"):
            uart_divisor(bad, 9600)


class Loop(wiring.Component):
    """TX -> RX through the line, to check both ends together."""

    def __init__(self, divisor):
        self.tx, self.rx = UARTTx(clk_hz=divisor, baud=1), UARTRx(clk_hz=divisor, baud=1)
        super().__init__({})

    def elaborate(self, platform):
        m = Module()
        m.submodules.tx, m.submodules.rx = self.tx, self.rx
        m.d.comb += self.rx.rx.eq(self.tx.tx)
        return m


@pytest.mark.parametrize("divisor", [4, 7, 16])
def test_tx_rx_loopback(divisor):
    dut = Loop(divisor)
    data = [0x00, 0xFF, 0x55, 0xA3, 0x01, 0x80]
    got = []

    async def send(ctx):
        for b in data:
            ctx.set(dut.tx.i.payload, b)
            ctx.set(dut.tx.i.valid, 1)
            await ctx.tick().until(dut.tx.i.ready)
            ctx.set(dut.tx.i.valid, 0)

    async def recv(ctx):
        ctx.set(dut.rx.o.ready, 1)
        while len(got) < len(data):
            await ctx.tick()
            if ctx.get(dut.rx.o.valid):
                got.append(ctx.get(dut.rx.o.payload))
            assert not ctx.get(dut.rx.frame_error) and not ctx.get(dut.rx.overrun)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(send)
    sim.add_testbench(recv)
    sim.run_until(1e-6 * divisor * 10 * (len(data) + 4))
    assert got == data


def _line(bits_per_byte, divisor, data, stop=1):
    levels = [1] * (3 * divisor)
    for b in data:
        for lvl in (0, *((b >> k) & 1 for k in range(8)), stop):
            levels += [lvl] * divisor
    return levels + [1] * (3 * divisor)


@pytest.mark.parametrize("stop,flag", [(1, "overrun"), (0, "frame_error")])
def test_rx_flags(stop, flag):
    d = 5
    rx = UARTRx(clk_hz=d, baud=1)
    flags = []

    async def bench(ctx):
        ctx.set(rx.o.ready, 0)                   # never read: the second byte overruns
        for lvl in _line(10, d, [0x12, 0x34], stop=stop):
            ctx.set(rx.rx, lvl)
            await ctx.tick()
            if ctx.get(getattr(rx, flag)):
                flags.append(1)

    sim = Simulator(rx)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert flags == ([1] if flag == "overrun" else [1, 1])


def test_parser_and_serializer():
    """Parser packs 3-byte beats after a good header, rejects a bad length; serializer frames beats."""
    parser = protocol.RequestParser(frame_bytes=6, lanes=3)
    stream_in = list(b"xxSQSQZI" + (7).to_bytes(4, "little") + b"SQZI" + (6).to_bytes(4, "little") + bytes([1, 2, 3, 4, 5, 6]))
    beats, errors = [], []

    async def feed(ctx):
        for b in stream_in:
            ctx.set(parser.i.payload, b)
            ctx.set(parser.i.valid, 1)
            await ctx.tick().until(parser.i.ready)
        ctx.set(parser.i.valid, 0)

    async def take(ctx):
        ctx.set(parser.o.ready, 1)
        for _ in range(200):
            await ctx.tick()
            if ctx.get(parser.o.valid):
                beats.append(ctx.get(parser.o.payload))
            if ctx.get(parser.bad_length):
                errors.append(1)
                ctx.set(parser.bad_length_ack, 1)
                await ctx.tick()
                ctx.set(parser.bad_length_ack, 0)

    sim = Simulator(parser)
    sim.add_clock(1e-6)
    sim.add_testbench(feed)
    sim.add_testbench(take)
    sim.run()
    assert errors == [1]
    assert beats == [0x030201, 0x060504]

    ser = protocol.ReplySerializer(beats=3, width=14)
    out = []

    async def src(ctx):
        for v in (0x1234, 0x0042, 2):
            ctx.set(ser.i.payload, v)
            ctx.set(ser.i.valid, 1)
            await ctx.tick().until(ser.i.ready)
        ctx.set(ser.i.valid, 0)

    async def sink(ctx):
        ctx.set(ser.status, 1)
        for k in range(100):
            ready = k % 3 != 0                    # back-pressure
            ctx.set(ser.o.ready, ready)
            valid, payload = ctx.get(ser.o.valid), ctx.get(ser.o.payload)
            await ctx.tick()
            if valid and ready:
                out.append(payload)

    sim = Simulator(ser)
    sim.add_clock(1e-6)
    sim.add_testbench(src)
    sim.add_testbench(sink)
    sim.run()
    assert bytes(out) == protocol.encode_reply([0x1234, 0x42, 2], beat_bytes=2, status=1)
