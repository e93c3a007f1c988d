"""Host side of the board protocol against an emulated board (the golden model behind a fake serial port)."""
import json

import numpy as np
import pytest

from squeezehw.host import BoardClient, BoardError, BoardTimeoutError, EmulatedBoard, protocol
from squeezehw.quant import golden
from squeezehw.quant.random_model import random_model


@pytest.fixture(scope="module")
def model():
    return random_model(np.random.default_rng(3), in_ch=3, size=12, classes=4)


def _image(model, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (model.in_ch, model.height, model.width), dtype=np.uint8)


def test_request_encoding_is_raster_channel_order(model):
    p = protocol()
    x = _image(model)
    req = p.encode_request(x)
    assert req[:4] == b"SQZI" and int.from_bytes(req[4:8], "little") == x.size
    assert req[8:11] == bytes(x[:, 0, 0]) and req[11:14] == bytes(x[:, 0, 1])


@pytest.mark.parametrize("beat_bytes", [1, 2, 3])
def test_classify_equals_golden(model, beat_bytes):
    board = EmulatedBoard(model, beat_bytes=max(beat_bytes, 2), noise=b"\x00junkSQZ")
    client = BoardClient(board, classes=model.classes, baud=1_000_000, timeout=1.0)
    for seed in range(3):
        x = _image(model, seed)
        reply = client.classify(x)
        ref = golden.run(model, x[None])
        assert reply.logits == [int(v) for v in ref.logits[0]] and reply.cls == int(ref.classes[0])
        assert reply.status == 0 and reply.junk_bytes == 8
    assert board.requests == 3


def test_timeout_is_clear(model):
    client = BoardClient(EmulatedBoard(model, mute=True), classes=model.classes, timeout=0.05, baud=10_000_000)
    with pytest.raises(BoardTimeoutError, match="nothing received.*baud rate"):
        client.classify(_image(model))


def test_truncated_reply_times_out(model):
    class Cut(EmulatedBoard):
        def read(self, n=1):
            if len(self._tx) <= 3:          # withhold the last values
                return b""
            return super().read(min(n, len(self._tx) - 3))
    client = BoardClient(Cut(model), classes=model.classes, timeout=0.05, baud=10_000_000)
    with pytest.raises(BoardTimeoutError, match="reply values"):
        client.classify(_image(model))


def test_board_errors_are_reported(model):
    p = protocol()
    client = BoardClient(EmulatedBoard(model, status=p.STATUS_OVERRUN), classes=model.classes, timeout=0.5)
    with pytest.raises(BoardError, match="overrun"):
        client.classify(_image(model))
    wrong = BoardClient(EmulatedBoard(model), classes=model.classes + 1, timeout=0.5)
    with pytest.raises(BoardError, match="classes"):
        wrong.classify(_image(model))
    small = random_model(np.random.default_rng(3), in_ch=1, size=12, classes=4)
    bad_len = BoardClient(EmulatedBoard(small), classes=4, timeout=0.5)
    with pytest.raises(BoardError, match="image size"):
        bad_len.classify(_image(model))


def test_client_validates():
    with pytest.raises(TypeError):
        BoardClient(object(), classes=3)
    with pytest.raises(ValueError, match="classes"):
        BoardClient(EmulatedBoard(None), classes=0)


def test_run_board_command_emulated(tmp_path, capsys, model):
    from squeezehw.cli import main
    path = tmp_path / "m.npz"
    model.save(path)
    from PIL import Image
    Image.fromarray(_image(model, 5).transpose(1, 2, 0)).save(tmp_path / "x.png")
    assert main(["run-board", "--port", "emulate", str(path), str(tmp_path / "x.png"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["bit_exact"] and out["class"] == out["golden_class"]
    assert main(["run-board", "--port", "emulate", str(path)]) == 2        # no image
    assert main(["run-board", "--port", "/nonexistent/tty", str(path), str(tmp_path / "x.png")]) == 2
