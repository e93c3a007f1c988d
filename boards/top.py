"""Board tops: the accelerator behind a UART, and the wrappers that put it on real boards.

:class:`BoardTop` (a Component with no pins, simulated as is): UART RX -> receive FIFO ->
:class:`~boards.protocol.RequestParser` (request header, then bytes packed into ``in_lanes``-byte
beats) -> accelerator -> :class:`~boards.protocol.ReplySerializer` (reply header, every logit and the
class, little-endian) -> UART TX.  The wire format is in ``boards/protocol.py`` and
``boards/README.md``.

:class:`ULX3STop` (ULX3S-85F: 25 MHz ``clk25`` -> EHXPLLL -> core clock, default 50 MHz; FTDI UART
``uart`` 0; LEDs 0-2 show overrun, framing error, busy; LED 7 the PLL lock) and
:class:`ICEBreakerTop` (iCEBreaker: 12 MHz ``clk12`` pin -> SB_PLL40_PAD -> core clock, default
24 MHz; FTDI UART ``uart`` 0; red LED = an error flag, green LED = busy) are Elaboratables for the
amaranth-boards platforms, built with :func:`squeezehw.toolchain.synth.build_board`.  The PLL settings are
computed exactly (``ecp5_pll``, ``ice40_pll``, ``gowin_rpll``); a clock that no setting makes exactly
is refused.

Gowin (platforms in :mod:`squeezehw.boards.gowin`): :class:`TangMega138KTop` (Tang Mega 138K Pro Dock: the
50 MHz oscillator on P16 clocks the core directly, since Apycula 0.32's PLL tool and our checks do not
cover the GW5AST's PLLA; UART ``uart`` 0 through the BL616 debugger's USB serial port; LEDs 0-2
overrun, framing error, busy) and :class:`TangPrimer20KTop` (Tang Primer 20K Dock: 27 MHz -> rPLL ->
core clock, default 54 MHz, settings as Apycula's ``gowin_pll``; UART through the BL702 debugger;
LEDs 0-2 as above, LED 3 the PLL lock).
"""
from __future__ import annotations

from amaranth import ClockDomain, ClockSignal, Const, Elaboratable, Instance, Module, Signal
from amaranth.lib import fifo, io, wiring
from amaranth.lib.cdc import ResetSynchronizer
from amaranth.lib.wiring import In, Out
from squeezehw.boards.registry import get_board

from .protocol import STATUS_FRAME_ERROR, STATUS_OVERRUN, ReplySerializer, RequestParser, beat_bytes_for
from .uart import UARTRx, UARTTx, uart_divisor

__all__ = ["BoardTop", "ULX3STop", "ICEBreakerTop", "TangMega138KTop", "TangPrimer20KTop", "ecp5_pll",
           "ice40_pll", "gowin_rpll"]


class BoardTop(wiring.Component):
    """``accelerator`` (a :class:`squeezehw.hw.accelerator.Accelerator`) behind a UART at ``baud``,
    for a core clock of ``clk_hz``.  Ports: ``rx`` (in), ``tx`` (out), ``status`` (sticky
    overrun / framing-error flags, cleared by each reply), ``busy`` (a frame is being received or a
    reply sent).  ``rx_fifo_depth`` bytes of buffer absorb the accelerator's input stalls."""

    def __init__(self, accelerator, *, clk_hz, baud, rx_fifo_depth: int = 64):
        for attr in ("i", "o", "in_lanes", "out_width", "out_beats_per_frame", "model"):
            if not hasattr(accelerator, attr):
                raise TypeError(f"BoardTop needs an Accelerator (with .{attr}), not {type(accelerator).__name__}")
        if isinstance(rx_fifo_depth, bool) or not isinstance(rx_fifo_depth, int) or rx_fifo_depth < 2:
            raise ValueError(f"rx_fifo_depth must be an integer >= 2, not {rx_fifo_depth!r}")
        self.divisor = uart_divisor(clk_hz, baud)      # validates clk_hz and baud
        self.accelerator, self.clk_hz, self.baud, self.rx_fifo_depth = accelerator, clk_hz, baud, rx_fifo_depth
        mdl = accelerator.model
        self.frame_bytes = mdl.in_ch * mdl.height * mdl.width
        self.in_lanes = accelerator.in_lanes
        self.out_beats_per_frame = accelerator.out_beats_per_frame
        self.out_width = accelerator.out_width
        self.beat_bytes = beat_bytes_for(accelerator.out_width)
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1), "status": Out(2), "busy": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.uart_rx = rx = UARTRx(clk_hz=self.clk_hz, baud=self.baud)
        m.submodules.uart_tx = tx = UARTTx(clk_hz=self.clk_hz, baud=self.baud)
        m.submodules.rx_fifo = buf = fifo.SyncFIFOBuffered(width=8, depth=self.rx_fifo_depth)
        m.submodules.parser = parser = RequestParser(frame_bytes=self.frame_bytes, lanes=self.in_lanes)
        m.submodules.accel = accel = self.accelerator
        m.submodules.reply = reply = ReplySerializer(beats=self.out_beats_per_frame, width=self.out_width)
        m.d.comb += [
            rx.rx.eq(self.rx), self.tx.eq(tx.tx),
            buf.w_data.eq(rx.o.payload), buf.w_en.eq(rx.o.valid), rx.o.ready.eq(buf.w_rdy),
            parser.i.payload.eq(buf.r_data), parser.i.valid.eq(buf.r_rdy), buf.r_en.eq(parser.i.ready),
            reply.error.eq(parser.bad_length), parser.bad_length_ack.eq(reply.error_ack),
            reply.status.eq(self.status), self.busy.eq(parser.busy | reply.busy | tx.busy),
        ]
        wiring.connect(m, parser.o, accel.i)
        wiring.connect(m, accel.o, reply.i)
        wiring.connect(m, reply.o, tx.i)
        # sticky error flags, reported (and cleared) by the next reply; a new error wins over the clear
        with m.If(reply.status_clear):
            m.d.sync += self.status.eq(0)
        for flag, strobe in ((STATUS_OVERRUN, rx.overrun), (STATUS_FRAME_ERROR, rx.frame_error)):
            with m.If(strobe):
                m.d.sync += self.status[flag.bit_length() - 1].eq(1)
        return m


# --- PLL settings ----------------------------------------------------------------------------------

def ecp5_pll(f_in_hz: float, f_out_hz: float) -> dict:
    """EHXPLLL dividers for an exact ``f_out_hz`` (as Project Trellis' ecppll: PFD 3.125-400 MHz,
    VCO 400-800 MHz, feedback from CLKOP)."""
    fin, fout = f_in_hz / 1e6, f_out_hz / 1e6
    for clki in range(1, 129):
        pfd = fin / clki
        if not 3.125 <= pfd <= 400:
            continue
        for fb in range(1, 81):
            if abs(pfd * fb - fout) > 1e-9:
                continue
            ops = [op for op in range(1, 129) if 400 <= fout * op <= 800]
            if ops:     # the VCO nearest the middle of its range, as ecppll does
                op = min(ops, key=lambda d: abs(fout * d - 600))
                return {"CLKI_DIV": clki, "CLKFB_DIV": fb, "CLKOP_DIV": op,
                        "CLKOP_CPHASE": max(0, op // 2 - 1), "vco_mhz": fout * op}
    raise ValueError(f"the ECP5 PLL cannot make exactly {fout:g} MHz from {fin:g} MHz; pick a multiple "
                     f"of a divisor of the input, e.g. 50, 75 or 100 MHz from 25 MHz")


def ice40_pll(f_in_hz: float, f_out_hz: float) -> dict:
    """SB_PLL40 settings (SIMPLE feedback) for an exact ``f_out_hz`` (as icepll: PFD 10-133 MHz,
    VCO 533-1066 MHz)."""
    fin, fout = f_in_hz / 1e6, f_out_hz / 1e6
    for divr in range(16):
        pfd = fin / (divr + 1)
        if not 10 <= pfd <= 133:
            continue
        for divq in range(1, 7):
            for divf in range(128):
                vco = pfd * (divf + 1)
                if 533 <= vco <= 1066 and abs(vco / 2 ** divq - fout) < 1e-9:
                    rng = 1 if pfd < 17 else 2 if pfd < 26 else 3 if pfd < 44 else 4 if pfd < 66 else \
                        5 if pfd < 101 else 6
                    return {"DIVR": divr, "DIVF": divf, "DIVQ": divq, "FILTER_RANGE": rng, "vco_mhz": vco}
    raise ValueError(f"the iCE40 PLL cannot make exactly {fout:g} MHz from {fin:g} MHz; pick e.g. "
                     f"24, 36 or 48 MHz from 12 MHz")


def gowin_rpll(f_in_hz: float, f_out_hz: float) -> dict:
    """GW2A rPLL settings for an exact ``f_out_hz``, searched as Apycula's ``gowin_pll`` does (limits
    for GW2A-18 C8/I7: PFD 3-500 MHz, VCO 500-1250 MHz, CLKOUT 3.90625-625 MHz;
    CLKOUT = FCLKIN * (FBDIV_SEL + 1) / (IDIV_SEL + 1), VCO = CLKOUT * ODIV_SEL)."""
    fin, fout = f_in_hz / 1e6, f_out_hz / 1e6
    if 3.90625 <= fout <= 625:
        for idiv in range(64):
            if not 3 <= fin / (idiv + 1) <= 500:
                continue
            for fbdiv in range(64):
                if abs(fin * (fbdiv + 1) / (idiv + 1) - fout) > 1e-9:
                    continue
                odivs = [o for o in (2, 4, 8, 16, 32, 48, 64, 80, 96, 112, 128) if 500 <= fout * o <= 1250]
                if odivs:
                    odiv = max(odivs)           # the fastest VCO in range, as gowin_pll picks
                    return {"IDIV_SEL": idiv, "FBDIV_SEL": fbdiv, "ODIV_SEL": odiv, "vco_mhz": fout * odiv}
    raise ValueError(f"the GW2A rPLL cannot make exactly {fout:g} MHz from {fin:g} MHz; pick a multiple "
                     f"of a divisor of the input, e.g. 27, 54 or 81 MHz from 27 MHz")


class _UARTPins:
    def __init__(self, rx, tx):
        self.rx, self.tx = rx, tx


def _uart(m: Module, platform) -> _UARTPins:
    """The FTDI UART (``uart`` 0) through plain I/O buffers: ``.rx.i`` in, ``.tx.o`` out."""
    uart = platform.request("uart", 0, dir="-")
    m.submodules.uart_rx_buf = rx = io.Buffer("i", uart.rx)
    m.submodules.uart_tx_buf = tx = io.Buffer("o", uart.tx)
    return _UARTPins(rx, tx)


def _sync_domain(m: Module, clk, locked) -> None:
    m.domains.sync = ClockDomain("sync")
    m.d.comb += ClockSignal("sync").eq(clk)
    m.submodules.reset_sync = ResetSynchronizer(~locked, domain="sync")


class ULX3STop(Elaboratable):
    """BoardTop on the ULX3S-85F: 25 MHz -> EHXPLLL -> ``core_hz`` (default 50 MHz), FTDI UART."""

    BOARD = get_board("ulx3s-85f")                  # oscillator pin and frequency: the registry's
    IN_HZ = round(BOARD.default_mhz * 1e6)

    def __init__(self, accelerator, *, baud: int = 115200, core_hz: float = 50e6, rx_fifo_depth: int = 64):
        self.pll = ecp5_pll(self.IN_HZ, core_hz)
        self.core_hz = core_hz
        self.core = BoardTop(accelerator, clk_hz=core_hz, baud=baud, rx_fifo_depth=rx_fifo_depth)

    def elaborate(self, platform):
        m = Module()
        m.submodules.clk25 = clk25 = io.Buffer("i", platform.request(self.BOARD.clock, 0, dir="-"))
        uart = _uart(m, platform)
        clk, locked = Signal(), Signal()
        p = self.pll
        m.submodules.pll = Instance(
            "EHXPLLL",
            a_FREQUENCY_PIN_CLKI=f"{self.IN_HZ / 1e6:g}", a_FREQUENCY_PIN_CLKOP=f"{self.core_hz / 1e6:g}",
            a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1", a_MFG_GMCREF_SEL="2",
            p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
            p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB",
            p_OUTDIVIDER_MUXC="DIVC", p_OUTDIVIDER_MUXD="DIVD",
            p_CLKI_DIV=p["CLKI_DIV"], p_CLKOP_ENABLE="ENABLED", p_CLKOP_DIV=p["CLKOP_DIV"],
            p_CLKOP_CPHASE=p["CLKOP_CPHASE"], p_CLKOP_FPHASE=0, p_FEEDBK_PATH="CLKOP", p_CLKFB_DIV=p["CLKFB_DIV"],
            i_RST=0, i_STDBY=0, i_CLKI=clk25.i, o_CLKOP=clk, i_CLKFB=clk,
            i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=1, i_PHASESTEP=1, i_PHASELOADREG=1,
            i_PLLWAKESYNC=0, i_ENCLKOP=0, o_LOCK=locked)
        _sync_domain(m, clk, locked)
        platform.add_clock_constraint(clk, self.core_hz)
        m.submodules.core = core = self.core
        m.d.comb += [core.rx.eq(uart.rx.i), uart.tx.o.eq(core.tx)]
        for k, sig in ((0, core.status[0]), (1, core.status[1]), (2, core.busy), (7, locked)):
            m.submodules[f"led{k}"] = led = io.Buffer("o", platform.request("led", k, dir="-"))
            m.d.comb += led.o.eq(sig)
        return m


class ICEBreakerTop(Elaboratable):
    """BoardTop on the iCEBreaker: 12 MHz pin -> SB_PLL40_PAD -> ``core_hz`` (default 24 MHz), FTDI UART."""

    BOARD = get_board("icebreaker")                 # oscillator pin and frequency: the registry's
    IN_HZ = round(BOARD.default_mhz * 1e6)

    def __init__(self, accelerator, *, baud: int = 115200, core_hz: float = 24e6, rx_fifo_depth: int = 64):
        self.pll = ice40_pll(self.IN_HZ, core_hz)
        self.core_hz = core_hz
        self.core = BoardTop(accelerator, clk_hz=core_hz, baud=baud, rx_fifo_depth=rx_fifo_depth)

    def elaborate(self, platform):
        m = Module()
        clk12 = platform.request(self.BOARD.clock, 0, dir="-")
        uart = _uart(m, platform)
        clk, locked = Signal(), Signal()
        p = self.pll
        m.submodules.pll = Instance(
            "SB_PLL40_PAD", p_FEEDBACK_PATH="SIMPLE", p_DIVR=p["DIVR"], p_DIVF=p["DIVF"], p_DIVQ=p["DIVQ"],
            p_FILTER_RANGE=p["FILTER_RANGE"],
            i_PACKAGEPIN=clk12.io, i_RESETB=1, i_BYPASS=0, o_PLLOUTGLOBAL=clk, o_LOCK=locked)
        _sync_domain(m, clk, locked)
        platform.add_clock_constraint(clk, self.core_hz)
        m.submodules.core = core = self.core
        m.d.comb += [core.rx.eq(uart.rx.i), uart.tx.o.eq(core.tx)]
        m.submodules.led_r = led_r = io.Buffer("o", platform.request("led_r", 0, dir="-"))
        m.submodules.led_g = led_g = io.Buffer("o", platform.request("led_g", 0, dir="-"))
        m.d.comb += [led_r.o.eq(core.status.any()), led_g.o.eq(core.busy)]
        return m


def _leds(m: Module, platform, signals) -> None:
    for k, sig in signals:
        m.submodules[f"led{k}"] = led = io.Buffer("o", platform.request("led", k, dir="-"))
        m.d.comb += led.o.eq(sig)


class TangMega138KTop(Elaboratable):
    """BoardTop on the Tang Mega 138K Pro Dock: the 50 MHz oscillator is the core clock (no PLL:
    Apycula's PLL support does not list the GW5AST; docs/boards.md), BL616 USB UART."""

    IN_HZ = 50_000_000

    def __init__(self, accelerator, *, baud: int = 115200, core_hz: float = 50e6, rx_fifo_depth: int = 64):
        if core_hz != self.IN_HZ:
            raise ValueError(f"the Tang Mega 138K top runs at its 50 MHz oscillator (no PLL with the open "
                             f"flow yet), not {core_hz / 1e6:g} MHz; drop core_hz")
        self.pll = None
        self.core_hz = core_hz
        self.core = BoardTop(accelerator, clk_hz=core_hz, baud=baud, rx_fifo_depth=rx_fifo_depth)

    def elaborate(self, platform):
        m = Module()
        m.submodules.clk50 = clk50 = io.Buffer("i", platform.request("clk50", 0, dir="-"))
        uart = _uart(m, platform)
        _sync_domain(m, clk50.i, Const(1, 1))   # the reset synchroniser still gives a reset after configuration
        platform.add_clock_constraint(clk50.i, self.core_hz)
        m.submodules.core = core = self.core
        m.d.comb += [core.rx.eq(uart.rx.i), uart.tx.o.eq(core.tx)]
        _leds(m, platform, ((0, core.status[0]), (1, core.status[1]), (2, core.busy)))
        return m


class TangPrimer20KTop(Elaboratable):
    """BoardTop on the Tang Primer 20K Dock: 27 MHz -> rPLL -> ``core_hz`` (default 54 MHz), BL702 USB UART."""

    IN_HZ = 27_000_000

    def __init__(self, accelerator, *, baud: int = 115200, core_hz: float = 54e6, rx_fifo_depth: int = 64):
        self.pll = gowin_rpll(self.IN_HZ, core_hz)
        self.core_hz = core_hz
        self.core = BoardTop(accelerator, clk_hz=core_hz, baud=baud, rx_fifo_depth=rx_fifo_depth)

    def elaborate(self, platform):
        m = Module()
        m.submodules.clk27 = clk27 = io.Buffer("i", platform.request("clk27", 0, dir="-"))
        uart = _uart(m, platform)
        clk, locked = Signal(), Signal()
        p = self.pll
        # as Apycula's gowin_pll writes it (static dividers, internal feedback)
        m.submodules.pll = Instance(
            "rPLL", p_FCLKIN=f"{self.IN_HZ / 1e6:.1f}", p_IDIV_SEL=p["IDIV_SEL"], p_FBDIV_SEL=p["FBDIV_SEL"],
            p_ODIV_SEL=p["ODIV_SEL"],
            i_CLKIN=clk27.i, i_CLKFB=0, i_RESET=0, i_RESET_P=0, i_FBDSEL=0, i_IDSEL=0, i_ODSEL=0,
            i_PSDA=0, i_DUTYDA=0, i_FDLY=0, o_CLKOUT=clk, o_LOCK=locked)
        _sync_domain(m, clk, locked)
        platform.add_clock_constraint(clk, self.core_hz)
        m.submodules.core = core = self.core
        m.d.comb += [core.rx.eq(uart.rx.i), uart.tx.o.eq(core.tx)]
        _leds(m, platform, ((0, core.status[0]), (1, core.status[1]), (2, core.busy), (3, locked)))
        return m
