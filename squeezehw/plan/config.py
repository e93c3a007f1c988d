"""One build config: everything that decides a design, as a frozen, JSON-serialisable object.

A :class:`BuildConfig` holds the model, the folding (``default``, ``auto`` with a budget or a frame
rate, a folding file, or the folding itself inline), the board, the multiplier primitive, the
requantiser mode and the clock.  The command line's flags map onto it
(:func:`squeezehw.pipeline.config_from_args`); ``squeezehw build --config FILE`` takes one; every
build writes ``config.json`` (and ``design.json["config"]``) with the folding resolved inline, so
``squeezehw build --config OUT/config.json`` rebuilds the same bytes from the output folder alone
(and the model file, which is checked by its SHA-256).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from ..errors import UserError

__all__ = ["BuildConfig", "FORMAT", "VERSION"]

FORMAT = "squeezehw-build-config"
WEIGHT_STORAGE = ("auto", "dense")
VERSION = 1


class ConfigFileError(UserError):
    """A build config file that cannot be read or names something unknown."""


@dataclass(frozen=True)
class BuildConfig:
    """``fold``: ``None`` (not said: ``auto`` when a budget, board or frame rate is given, else
    ``default``), ``"default"`` (the default folding, whatever the board), ``"auto"`` (needs one of
    ``max_multipliers``, ``max_dsp``, ``board`` or ``target_fps``), a folding file's path, or
    ``{"layers": {name: {"simd", "pe"}}}`` inline.  ``multiplier``: None = the board's primitive (squeezehw.boards.registry), else ``generic`` or
    ``ecp5``.  ``weights``: ``auto`` (a conv whose integer model carries a per-layer codebook keeps
    its weights compressed, decoded by a WeightDecoder in front of its MVU; the others dense) or
    ``dense`` (every weight w_bits wide).  ``speed_slack`` is in percent, ``clock_mhz`` in MHz.  ``model_sha256``: the model
    file's hash (recorded by a build, checked when rebuilding)."""
    model: str = "default"
    fold: object = None
    max_multipliers: int | None = None
    max_dsp: int | None = None
    max_bram: int | None = None
    target_fps: float | None = None
    speed_slack: float = 2.0
    board: str | None = None
    multiplier: str | None = None
    requant: str = "parallel"
    weights: str = "auto"
    clock_mhz: float = 100.0
    model_sha256: str | None = None

    def __post_init__(self):
        if not isinstance(self.model, str) or not self.model:
            raise ConfigFileError(f"config: model must be a file path or `default`, not {self.model!r}")
        if not (self.fold is None or isinstance(self.fold, str)
                or (isinstance(self.fold, dict) and "layers" in self.fold)):
            raise ConfigFileError(f"config: fold must be `default`, `auto`, a folding file or "
                                  f'{{"layers": ...}}, not {self.fold!r}')
        for name in ("max_multipliers", "max_dsp", "max_bram"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
                raise ConfigFileError(f"config: {name} must be a whole number or null, not {v!r}")
        for name in ("target_fps", "speed_slack", "clock_mhz"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                raise ConfigFileError(f"config: {name} must be a number, not {v!r}")
        for name in ("board", "multiplier", "requant", "model_sha256"):
            v = getattr(self, name)
            if v is not None and not isinstance(v, str):
                raise ConfigFileError(f"config: {name} must be a string, not {v!r}")
        if self.weights not in WEIGHT_STORAGE:
            raise ConfigFileError(f"config: weights must be one of {', '.join(WEIGHT_STORAGE)}, not {self.weights!r}")

    # --- what the build uses -------------------------------------------------------------------
    def board_entry(self):
        from ..boards.registry import get_board
        return get_board(self.board) if self.board is not None else None

    def multiplier_primitive(self) -> str:
        """The given primitive, else the board's (squeezehw.boards.registry), else ``generic``.  A vendor
        primitive that is not the board's is refused (the part would not have it)."""
        b = self.board_entry()
        if self.multiplier:
            if b is not None and self.multiplier not in ("generic", b.multiplier):
                raise ConfigFileError(f"--dsp {self.multiplier}: {b.name} ({b.device}) has no such "
                                      f"primitive; use --dsp {' or '.join(sorted({b.multiplier, 'generic'}))}")
            return self.multiplier
        return b.multiplier if b else "generic"

    def target(self):
        from .lowering import Target
        b = self.board_entry()
        # the board's block RAM decides which weight memories are banked (plan/resources.py)
        return Target(multiplier=self.multiplier_primitive(), requant=self.requant,
                      board=b.name if b is not None else None)

    def weight_codes(self, model, folding) -> dict:
        """{conv name: PackedWeights} of the convs stored compressed (``weights="auto"``)."""
        from ..quant.sparse_weights import model_weight_codes
        b = self.board_entry()
        return model_weight_codes(model, folding, self.weights, board=b.name if b is not None else None)

    # --- files ---------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"format": FORMAT, "version": VERSION, **asdict(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict, where: str = "config") -> "BuildConfig":
        if not isinstance(d, dict) or d.get("format") != FORMAT or d.get("version") != VERSION:
            raise ConfigFileError(f"{where}: not a {FORMAT} v{VERSION} object (a `squeezehw build` output "
                                  "folder has one in config.json)")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known - {"format", "version"})
        if unknown:
            raise ConfigFileError(f"{where}: unknown keys {unknown}; known: {sorted(known)}")
        return cls(**{k: v for k, v in d.items() if k in known})

    @classmethod
    def load(cls, path) -> "BuildConfig":
        path = Path(path)
        if path.is_dir():
            path = path / "config.json"
        try:
            d = json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigFileError(f"{path}: no such build config file") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ConfigFileError(f"{path}: not valid JSON ({e})") from None
        if isinstance(d, dict) and d.get("format") == "squeezehw-design":    # a design.json
            d = d.get("config")
        return cls.from_dict(d, str(path))

    def recorded(self, folding) -> "BuildConfig":
        """The config a build records: the folding inline (no folding file or auto-fold search to
        repeat), the model as an absolute path with its SHA-256."""
        model, sha = self.model, None
        if model != "default":
            p = Path(model).resolve()
            model, sha = str(p), hashlib.sha256(p.read_bytes()).hexdigest()
        layers = json.loads(folding.to_json())["layers"]
        return replace(self, model=model, model_sha256=sha, fold={"layers": layers})

    def check_model_file(self) -> None:
        if self.model_sha256 and self.model != "default":
            p = Path(self.model)
            if p.is_file() and hashlib.sha256(p.read_bytes()).hexdigest() != self.model_sha256:
                raise ConfigFileError(f"{p} changed since this config was recorded (SHA-256 differs); "
                                      "the build would not be the same; point `model` at the original file")
