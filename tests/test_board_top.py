"""The whole board top (UART RX -> parser -> accelerator -> reply -> UART TX) in Verilator via cocotb,
on real held-out MNIST digits of the default model, bit-exact against the golden model; plus the
board wrappers' elaboration for their amaranth-boards platforms and the PLL settings."""
import warnings
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]

from squeezehw.boards import protocol
from squeezehw.boards.top import (
    BoardTop,
    ICEBreakerTop,
    TangMega138KTop,
    TangPrimer20KTop,
    ULX3STop,
    ecp5_pll,
    gowin_rpll,
    ice40_pll,
)

CLK_HZ, BAUD = 8_000_000, 1_000_000        # 8 clock cycles per bit keeps the simulation short


@pytest.fixture(scope="module")
def default_design():
    from squeezehw.pipeline import default_int_model
    from squeezehw.plan.folding import default_folding
    model = default_int_model(progress=False)
    return model, default_folding(model)


def _accel(model, fold, board=None):
    """The accelerator of the build plan, with the board's multiplier primitive (the registry's)."""
    from squeezehw.boards.registry import get_board

    from squeezehw.plan.lowering import Target, lower
    return lower(model, fold, Target(multiplier=get_board(board).multiplier if board else "generic")).accelerator()


def _decode_replies(data: bytes):
    replies = []
    while data:
        head = protocol.parse_reply_header(data[:protocol.HEADER_BYTES])
        n = head.beats * head.beat_bytes
        body = data[protocol.HEADER_BYTES:protocol.HEADER_BYTES + n]
        assert len(body) == n, f"reply cut short: {data!r}"
        values = [int.from_bytes(body[k:k + head.beat_bytes], "little") for k in range(0, n, head.beat_bytes)]
        replies.append((head, values))
        data = data[protocol.HEADER_BYTES + n:]
    return replies


@pytest.mark.slow
@pytest.mark.parametrize("dsp", ["generic", "gw5a", "gw2a"])
def test_board_top_uart_bit_exact(default_design, dsp):
    """``dsp``: the multiplier form the board's platform selects (generic: ULX3S core as simulated
    before, iCEBreaker; gw5a: Tang Mega 138K, MULT12X12; gw2a: Tang Primer 20K, MULT9X9/MULT18X18),
    simulated with the primitives' models (sim/models/)."""
    from squeezehw.quant import golden
    from squeezehw.quant.default_model import mnist_split
    from squeezehw.toolchain import verilator
    from squeezehw.toolchain.build import module_name
    model, fold = default_design
    board = {"generic": None, "gw5a": "tang-mega-138k-pro", "gw2a": "tang-primer-20k"}[dsp]
    top = BoardTop(_accel(model, fold, board), clk_hz=CLK_HZ, baud=BAUD)
    b = verilator.build(top, name=f"board_{module_name(model)}" + ("" if dsp == "generic" else f"_{dsp}"),
                        progress=False)
    if dsp != "generic":
        text = b.verilog.read_text()
        assert ("MULT12X12 #(" if dsp == "gw5a" else "MULT9X9 #(") in text
    _, _, test_x, _ = mnist_split()
    images = test_x[:2]
    # a request with a wrong length first: the board must answer with an error reply and resync
    send = protocol.REQUEST_MAGIC + (5).to_bytes(4, "little")
    send += b"".join(protocol.encode_request(img) for img in images)
    beat_bytes = protocol.beat_bytes_for(top.out_width)
    frame_reply = protocol.HEADER_BYTES + (model.classes + 1) * beat_bytes
    n_reply = protocol.HEADER_BYTES + len(images) * frame_reply
    res = verilator.run_cocotb(b, {"send": list(send), "divisor": top.divisor, "n_reply": n_reply,
                                   "max_cycles": 40 * len(send) * top.divisor + 200_000},
                               test_module="squeezehw.sim.tb_board")
    assert res["tx_errors"] == []
    assert res["sent_all"]
    data = bytes(res["reply"])
    assert len(data) == n_reply, f"expected {n_reply} reply bytes, got {len(data)} after {res['cycles']} cycles"
    replies = _decode_replies(data)
    err_head, err_values = replies[0]
    assert err_head.status == protocol.STATUS_BAD_LENGTH and err_head.beats == 0 and err_values == []
    ref = golden.run(model, images)
    for k, (head, values) in enumerate(replies[1:]):
        assert head.status == 0, head.status_text()
        assert head.beat_bytes == beat_bytes and head.beats == model.classes + 1
        assert values[:-1] == [int(v) for v in ref.logits[k]], f"digit {k}: logits differ"
        assert values[-1] == int(ref.classes[k])
    assert res["status"] == 0


def test_board_top_validates(default_design):
    model, fold = default_design
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="too fast"):
            BoardTop(_accel(model, fold), clk_hz=1_000_000, baud=500_000)
        with pytest.raises(ValueError, match="rx_fifo_depth"):
            BoardTop(_accel(model, fold), clk_hz=CLK_HZ, baud=BAUD, rx_fifo_depth=1)
        with pytest.raises(TypeError, match="Accelerator"):
            BoardTop(object(), clk_hz=CLK_HZ, baud=BAUD)


def test_pll_settings():
    p = ecp5_pll(25e6, 50e6)
    assert 25 * p["CLKFB_DIV"] / p["CLKI_DIV"] == 50 and 400 <= p["vco_mhz"] <= 800
    p = ecp5_pll(25e6, 100e6)
    assert 25 * p["CLKFB_DIV"] / p["CLKI_DIV"] == 100
    p = ice40_pll(12e6, 24e6)
    assert 12 * (p["DIVF"] + 1) / ((p["DIVR"] + 1) * 2 ** p["DIVQ"]) == 24 and 533 <= p["vco_mhz"] <= 1066
    with pytest.raises(ValueError, match="cannot make exactly"):
        ecp5_pll(25e6, 33.333e6)
    with pytest.raises(ValueError, match="cannot make exactly"):
        ice40_pll(12e6, 1e6)
    p = gowin_rpll(27e6, 54e6)
    assert 27 * (p["FBDIV_SEL"] + 1) / (p["IDIV_SEL"] + 1) == 54 and 500 <= p["vco_mhz"] <= 1250
    assert (p["IDIV_SEL"], p["FBDIV_SEL"], p["ODIV_SEL"]) == (0, 1, 16)      # as Apycula's gowin_pll gives
    p = gowin_rpll(27e6, 81e6)
    assert 27 * (p["FBDIV_SEL"] + 1) / (p["IDIV_SEL"] + 1) == 81
    with pytest.raises(ValueError, match="cannot make exactly"):
        gowin_rpll(27e6, 1000e6)


@pytest.mark.parametrize("board", ["ulx3s", "icebreaker"])
def test_board_wrappers_elaborate(default_design, board):
    """The wrappers request the platform's resources and elaborate (no synthesis tools run)."""
    model, fold = default_design
    if board == "ulx3s":
        from amaranth_boards.ulx3s import ULX3S_85F_Platform as Platform
        top = ULX3STop(_accel(model, fold, "ulx3s-85f"), baud=115200)
    else:
        from amaranth_boards.icebreaker import ICEBreakerPlatform as Platform
        top = ICEBreakerTop(_accel(model, fold, "icebreaker"), baud=115200)
    plan = Platform().prepare(top, "top", emit_src=False)
    files = plan.files
    text = files["top.il"] if "top.il" in files else next(v for k, v in files.items() if k.endswith(".il"))
    text = text.decode() if isinstance(text, bytes) else text
    assert ("EHXPLLL" if board == "ulx3s" else "SB_PLL40_PAD") in text
    # the ULX3S's registry entry builds every multiply as a MULT18X18D with its own registers
    # (hw/multiplier.py); the iCEBreaker's as generic `*`
    assert ("MULT18X18D" in text) == (board == "ulx3s")
    if board == "ulx3s":
        assert "REG_OUTPUT_CLK" in text and '"CLK0"' in text
    constraints = next(v for k, v in files.items() if k.endswith((".lpf", ".pcf")))
    constraints = constraints.decode() if isinstance(constraints, bytes) else constraints
    assert ("M1" in constraints and "L4" in constraints) if board == "ulx3s" else (" 6" in constraints and " 9" in constraints)


def _tiny_family(seed=7, bypass="none"):
    from squeezehw.frontend.family import FamilyConfig
    from squeezehw.quant.random_model import random_model
    cfg = FamilyConfig(name="tiny_family", base_e=8, incr_e=0, pct3x3=0.5, sr=0.25, freq=1, num_fire=1,
                       conv1_channels=8, conv1_kernel=3, conv1_stride=1, conv1_padding=0, pool_after=(0,),
                       input_size=12, in_channels=1, classes=4, mean=(0.5,), std=(0.25,))
    fires = tuple((f.squeeze, f.expand1x1, f.expand3x3, bypass) for f in cfg.fires())
    return random_model(np.random.default_rng(seed), in_ch=1, size=12, conv1=(8, 3, 1, 0), fires=fires,
                        pool_after=(0,), classes=4, name="tiny_family")


@pytest.mark.parametrize("requant", ["serial", "parallel"])
@pytest.mark.parametrize("bypass", ["none", "complex"])
def test_accelerator_serial_requant_bit_exact(bypass, requant):
    """(The watchdog is long: the tail of a frame computes for thousands of cycles with no transfer
    on the accelerator's ports.)  The iCEBreaker design's opt-in requant="serial" accelerator (conv1, Fire and head MVUs all with
    the LUT requantiser) against the golden model, under random input gaps and output stalls."""
    from squeezehw.sim.streamsim import Traffic, simulate

    from squeezehw.plan.folding import auto_fold
    from squeezehw.plan.lowering import Target, lower
    from squeezehw.quant import golden
    model = _tiny_family(bypass=bypass)
    fold = auto_fold(model, max_multipliers=len(model.convs()))
    acc = lower(model, fold, Target(requant=requant)).accelerator()
    assert (acc.requant_multipliers() == 0) == (requant == "serial")
    images = np.random.default_rng(3).integers(0, 256, (2, 1, 12, 12)).astype(np.uint8)
    beats = [int(v) for img in images for v in img.transpose(1, 2, 0).reshape(-1)]
    assert acc.in_lanes == 1
    r = simulate(acc, {"i": beats}, {"o": 2 * acc.out_beats_per_frame},
                 traffic=Traffic(gap=0.3, stall=0.4, burst=4, seed=5, watchdog=20_000), extra_cycles=50)
    ref = golden.run(model, images)
    for k in range(2):
        out = r["o"][k * acc.out_beats_per_frame:(k + 1) * acc.out_beats_per_frame]
        assert out[:-1] == [int(v) for v in ref.logits[k]] and out[-1] == int(ref.classes[k])


@pytest.mark.parametrize("board", ["tang-mega-138k-pro", "tang-primer-20k"])
def test_gowin_board_wrappers_elaborate(default_design, board):
    """The Gowin wrappers request the platform's resources and elaborate (no synthesis tools run):
    the multiplies are the family's DSP primitives, the UART is on the debugger's pins."""
    from squeezehw.boards.registry import get_board
    model, fold = default_design
    b = get_board(board)
    if board == "tang-mega-138k-pro":
        top = TangMega138KTop(_accel(model, fold, board), baud=115200)
        with pytest.raises(ValueError, match="50 MHz oscillator"):
            TangMega138KTop(_accel(model, fold, board), core_hz=100e6)
    else:
        top = TangPrimer20KTop(_accel(model, fold, board), baud=115200)
    plan = b.platform_class()().prepare(top, "top", emit_src=False)
    text = plan.files["top.il"]
    text = text.decode() if isinstance(text, bytes) else text
    if board == "tang-mega-138k-pro":
        assert "MULT12X12" in text and "rPLL" not in text and "MULT18X18D" not in text
    else:
        assert "MULT9X9" in text and "rPLL" in text
    cst = plan.files["top.cst"]
    pins = ("P15", "N16") if board == "tang-mega-138k-pro" else ("T13", "M11")
    assert all(f" {pin};" in cst for pin in pins), cst
