"""The SqueezeNet family: one frozen config object per network, built from the paper's metaparameters.

Iandola et al. (2016), section 5, describe a whole family of SqueezeNets with a handful of numbers:
``base_e`` (expand filters of the first Fire), ``incr_e`` (added every ``freq`` Fires), ``pct3x3``
(share of 3x3 expand filters) and ``sr`` (squeeze ratio).  Fire ``i`` (0-based) then has

    e_i = base_e + incr_e * floor(i / freq)
    e3  = round(pct3x3 * e_i),  e1 = e_i - e3
    s_i = round(sr * e_i)

where ``round`` rounds half up (Python's ``round`` rounds half to even, which would make the family
depend on a banker's convention).  Around this sit conv1 (+ReLU), 3x3/2 ``ceil_mode`` max-pools at
the positions in ``pool_after`` and a head (1x1 conv + ReLU + global average pool).

``bypass`` follows the paper: ``'simple'`` puts an identity bypass around every Fire whose input and
output channel counts agree; ``'complex'`` additionally puts a 1x1-conv bypass around every other
Fire.  ``fire_bypass`` (one mode per Fire) overrides that rule where a design wants something else.

Layer names are torchvision's state_dict prefixes: ``features.0`` is conv1 (its ReLU is
``features.1``), then every pool and Fire takes the next ``features`` index, and the head conv is
``classifier.1`` (after the Dropout at ``classifier.0``).  ``build_network`` and the importer
(``squeezehw.frontend.importer``) therefore produce identical IR for the same network.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

from .ir import BYPASS_MODES, Conv, Fire, Head, MaxPool, Network, NetworkError

__all__ = ["FamilyConfig", "FireSpec", "SQUEEZENET1_0", "SQUEEZENET1_1", "build_network", "to_torch",
           "IMAGENET_MEAN", "IMAGENET_STD", "FORMAT", "VERSION"]

FORMAT = "squeezehw-family"
VERSION = 1

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _round_half_up(x: float) -> int:
    # The tiny epsilon absorbs binary noise such as 0.125 * 40 = 4.999999... never seen in
    # practice, but a family member must not change because of it.
    return int(math.floor(x + 0.5 + 1e-9))


@dataclass(frozen=True)
class FireSpec:
    """One Fire module's channel counts and bypass, derived from a FamilyConfig."""
    index: int          # 0-based position among the Fires
    in_ch: int
    squeeze: int
    expand1x1: int
    expand3x3: int
    bypass: str

    @property
    def out_ch(self) -> int:
        return self.expand1x1 + self.expand3x3


@dataclass(frozen=True, kw_only=True)
class FamilyConfig:
    """A SqueezeNet-family network, fully described by the paper's metaparameters.

    All arguments are keyword-only and validated; lists (from JSON) become tuples.
    """
    base_e: int
    incr_e: int
    pct3x3: float
    sr: float
    freq: int
    num_fire: int
    conv1_channels: int
    conv1_kernel: int
    conv1_stride: int
    conv1_padding: int
    pool_after: tuple
    bypass: str = "none"
    input_size: int = 224
    in_channels: int = 3
    classes: int = 1000
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    resize: int | None = None
    name: str = "squeezenet_family"
    fire_bypass: tuple | None = None   # explicit per-Fire bypass modes, overriding ``bypass``
    labels: tuple | None = None        # optional class names

    def __post_init__(self):
        fix = object.__setattr__   # frozen: normalise JSON lists to tuples once, here
        for key in ("pool_after", "mean", "std", "fire_bypass", "labels"):
            value = getattr(self, key)
            if value is not None and not isinstance(value, (str, bytes)):
                try:
                    fix(self, key, tuple(value))
                except TypeError:
                    raise NetworkError(f"FamilyConfig: {key} must be a list, not {value!r}") from None
        for key in ("base_e", "freq", "num_fire", "conv1_channels", "conv1_kernel", "conv1_stride",
                    "input_size", "in_channels", "classes"):
            _check_int(key, getattr(self, key), 1)
        _check_int("incr_e", self.incr_e, 0)
        _check_int("conv1_padding", self.conv1_padding, 0)
        if self.resize is not None:
            _check_int("resize", self.resize, self.input_size)
        for key in ("pct3x3", "sr"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 1:
                raise NetworkError(f"FamilyConfig: {key} must be a number in (0, 1], not {v!r}")
        if self.pct3x3 >= 1:
            raise NetworkError("FamilyConfig: pct3x3=1 leaves no 1x1 expand filters; use a value below 1")
        if self.bypass not in BYPASS_MODES:
            raise NetworkError(f"FamilyConfig: bypass must be one of {BYPASS_MODES}, not {self.bypass!r}")
        if not isinstance(self.name, str) or not self.name:
            raise NetworkError(f"FamilyConfig: name must be a non-empty string, not {self.name!r}")
        for p in self.pool_after:
            if isinstance(p, bool) or not isinstance(p, int) or not 0 <= p <= self.num_fire:
                raise NetworkError(
                    f"FamilyConfig: pool_after entry {p!r} is not a position in 0..{self.num_fire} "
                    "(0 = after conv1, i = after the i-th Fire)")
        if len(set(self.pool_after)) != len(self.pool_after):
            raise NetworkError(f"FamilyConfig: pool_after {list(self.pool_after)} lists a position twice")
        fix(self, "pool_after", tuple(sorted(self.pool_after)))
        for key in ("mean", "std"):
            v = getattr(self, key)
            if len(v) != self.in_channels or not all(isinstance(x, (int, float)) and math.isfinite(x)
                                                     for x in v):
                raise NetworkError(f"FamilyConfig: {key} must list {self.in_channels} finite numbers "
                                   f"(one per input channel), not {list(v)}")
        fix(self, "mean", tuple(float(x) for x in self.mean))
        fix(self, "std", tuple(float(x) for x in self.std))
        if not all(x > 0 for x in self.std):
            raise NetworkError(f"FamilyConfig: std values must be positive, not {list(self.std)}")
        if self.fire_bypass is not None:
            if len(self.fire_bypass) != self.num_fire or any(m not in BYPASS_MODES for m in self.fire_bypass):
                raise NetworkError(
                    f"FamilyConfig: fire_bypass must list {self.num_fire} modes from {BYPASS_MODES} "
                    f"(one per Fire), not {list(self.fire_bypass)}")
        if self.labels is not None and len(self.labels) != self.classes:
            raise NetworkError(f"FamilyConfig: {len(self.labels)} labels for {self.classes} classes")
        self.fires()                 # channel counts >= 1, simple bypass only where in == out
        build_network(self)          # spatial sizes: every window fits, no map shrinks to nothing

    # --- derived shapes --------------------------------------------------------------------------
    def fires(self) -> list[FireSpec]:
        """Every Fire's channel counts and bypass mode, in order."""
        out = []
        in_ch = self.conv1_channels
        for i in range(self.num_fire):
            e = self.base_e + self.incr_e * (i // self.freq)
            e3 = _round_half_up(self.pct3x3 * e)
            e1 = e - e3
            s = _round_half_up(self.sr * e)
            for what, v in (("squeeze", s), ("expand1x1", e1), ("expand3x3", e3)):
                if v < 1:
                    raise NetworkError(
                        f"FamilyConfig: Fire {i} (e={e}) gets {what}={v} filters; raise base_e, "
                        f"or move pct3x3={self.pct3x3}/sr={self.sr} away from 0 and 1")
            if self.fire_bypass is not None:
                mode = self.fire_bypass[i]
                if mode == "simple" and in_ch != e:
                    raise NetworkError(
                        f"FamilyConfig: fire_bypass[{i}]='simple' needs equal input and output channels "
                        f"({in_ch} != {e}); use 'complex' there")
            elif self.bypass == "none":
                mode = "none"
            elif in_ch == e:
                mode = "simple"
            else:
                mode = "complex" if self.bypass == "complex" else "none"
            out.append(FireSpec(i, in_ch, s, e1, e3, mode))
            in_ch = e
        return out

    # --- serialisation ---------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = {"format": FORMAT, "version": VERSION}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            d[f.name] = list(v) if isinstance(v, tuple) else v
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, d: dict, *, source: str = "family config") -> "FamilyConfig":
        if not isinstance(d, dict):
            raise NetworkError(f"{source}: expected a JSON object, got {type(d).__name__}")
        d = dict(d)
        fmt, ver = d.pop("format", FORMAT), d.pop("version", VERSION)
        if fmt != FORMAT or ver != VERSION:
            raise NetworkError(f"{source}: format {fmt!r} version {ver!r} is not {FORMAT!r} version {VERSION}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise NetworkError(f"{source}: unknown keys {unknown}; known keys are {sorted(names)}")
        required = [f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING and f.name not in d]
        if required:
            raise NetworkError(f"{source}: missing keys {required}")
        return cls(**d)

    @classmethod
    def from_json(cls, text: str, *, source: str = "family config") -> "FamilyConfig":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise NetworkError(f"{source}: not valid JSON ({e})") from None
        return cls.from_dict(d, source=source)

    @classmethod
    def load(cls, path) -> "FamilyConfig":
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise NetworkError(f"family config {path} does not exist") from None
        except (OSError, UnicodeDecodeError) as e:
            raise NetworkError(f"family config {path} is unreadable ({e})") from None
        return cls.from_json(text, source=str(path))

    def save(self, path) -> None:
        Path(path).write_text(self.to_json(), encoding="utf-8")

    def replace(self, **changes) -> "FamilyConfig":
        return dataclasses.replace(self, **changes)


def _check_int(key, value, lo):
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise NetworkError(f"FamilyConfig: {key} must be an integer >= {lo}, not {value!r}")




# --- building ------------------------------------------------------------------------------------
def build_network(config: FamilyConfig, weights=None) -> Network:
    """The IR of ``config``; with ``weights`` (a state dict in torchvision layout: ``NAME.weight`` /
    ``NAME.bias`` arrays or tensors, e.g. ``module.state_dict()`` or a loaded ``.npz``) it carries
    float weights, checked key by key and shape by shape."""
    if not isinstance(config, FamilyConfig):
        raise NetworkError(f"build_network needs a FamilyConfig, not {type(config).__name__}")
    layers = [Conv("features.0", config.in_channels, config.conv1_channels, config.conv1_kernel,
                   config.conv1_stride, config.conv1_padding, True)]
    idx = 2                          # features.1 is conv1's ReLU
    pools = set(config.pool_after)

    def pool():
        nonlocal idx
        layers.append(MaxPool(f"features.{idx}", 3, 2))
        idx += 1

    if 0 in pools:
        pool()
    in_ch = config.conv1_channels
    for spec in config.fires():
        layers.append(Fire(f"features.{idx}", spec.in_ch, spec.squeeze, spec.expand1x1,
                           spec.expand3x3, spec.bypass))
        idx += 1
        in_ch = spec.out_ch
        if spec.index + 1 in pools:
            pool()
    layers.append(Head("classifier.1", in_ch, config.classes))
    net = Network(name=config.name, in_ch=config.in_channels, height=config.input_size,
                  width=config.input_size, layers=tuple(layers), mean=config.mean, std=config.std,
                  resize=config.resize, labels=config.labels)
    if weights is not None:
        from .importer import weights_from_state_dict  # importer needs family too: import late
        net = net.with_weights(weights_from_state_dict(net, weights, source=f"weights for {config.name}"))
    return net


def to_torch(config: FamilyConfig, *, dropout: float = 0.5):
    """A freshly initialised PyTorch module of ``config`` (``squeezehw.frontend.torch_models.FamilyNet``)."""
    from .torch_models import FamilyNet  # keep torch out of this module's import
    return FamilyNet(config, dropout=dropout)


# --- presets: torchvision's SqueezeNets, exactly ------------------------------------------------
_IMAGENET = dict(base_e=128, incr_e=128, pct3x3=0.5, sr=0.125, freq=2, num_fire=8, input_size=224,
                 in_channels=3, classes=1000, mean=IMAGENET_MEAN, std=IMAGENET_STD, resize=256)

SQUEEZENET1_0 = FamilyConfig(name="squeezenet1_0", conv1_channels=96, conv1_kernel=7, conv1_stride=2,
                             conv1_padding=0, pool_after=(0, 3, 7), **_IMAGENET)
SQUEEZENET1_1 = FamilyConfig(name="squeezenet1_1", conv1_channels=64, conv1_kernel=3, conv1_stride=2,
                             conv1_padding=0, pool_after=(0, 2, 4), **_IMAGENET)
