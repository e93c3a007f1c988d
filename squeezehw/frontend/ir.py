"""Network IR of the SqueezeNet family: a short, linear list of layer nodes.

SqueezeNet is a chain: conv1, max-pools, Fire modules (each optionally with a simple or complex
bypass around it) and a head (final 1x1 conv + ReLU + global average pool).  Branching only ever
happens *inside* a Fire node, so the IR is a tuple of nodes that every later pass can walk with a
plain ``for`` loop.  Nodes carry shapes only; weights live beside them in a ``dict`` keyed by the
conv's name (torchvision's state_dict prefix, e.g. ``features.3.squeeze``).

Tensor layout everywhere in software: (C, H, W) for one frame, (N, C, H, W) for a batch.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from ..errors import UserError

__all__ = [
    "Conv", "MaxPool", "Fire", "Head", "Network", "NetworkError",
    "conv_out_size", "pool_out_size",
]


class NetworkError(UserError, ValueError):
    """A network that the SqueezeNet-family IR cannot represent, or inconsistent weights."""


def conv_out_size(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def pool_out_size(size: int, kernel: int, stride: int) -> int:
    """PyTorch's MaxPool2d output size with ``ceil_mode=True`` and no padding."""
    out = -(-(size - kernel) // stride) + 1
    if (out - 1) * stride >= size:  # the last window must start inside the input
        out -= 1
    return out


@dataclass(frozen=True)
class Conv:
    """A 2-D convolution with bias, optionally followed by ReLU."""
    name: str
    in_ch: int
    out_ch: int
    kernel: int = 1
    stride: int = 1
    padding: int = 0
    relu: bool = True

    def out_hw(self, h: int, w: int) -> tuple[int, int]:
        return (conv_out_size(h, self.kernel, self.stride, self.padding),
                conv_out_size(w, self.kernel, self.stride, self.padding))

    @property
    def weight_shape(self) -> tuple[int, int, int, int]:
        return (self.out_ch, self.in_ch, self.kernel, self.kernel)

    def macs(self, h_out: int, w_out: int) -> int:
        return h_out * w_out * self.out_ch * self.in_ch * self.kernel * self.kernel


@dataclass(frozen=True)
class MaxPool:
    """Max-pool KxK/S with ``ceil_mode=True`` and no padding (torchvision's SqueezeNet pools)."""
    name: str
    kernel: int = 3
    stride: int = 2

    def out_hw(self, h: int, w: int) -> tuple[int, int]:
        return pool_out_size(h, self.kernel, self.stride), pool_out_size(w, self.kernel, self.stride)


BYPASS_MODES = ("none", "simple", "complex")


@dataclass(frozen=True)
class Fire:
    """squeeze 1x1 (+ReLU) -> expand1x1 (+ReLU) || expand3x3 pad 1 (+ReLU) -> concat [e1, e3].

    ``bypass='simple'`` adds the Fire input to its output (needs in_ch == e1 + e3);
    ``bypass='complex'`` adds a 1x1 conv (no ReLU) of the input.  The sum is followed by ReLU so
    activations stay unsigned (a no-op for simple bypass: both terms are already >= 0).
    """
    name: str
    in_ch: int
    squeeze: int
    expand1x1: int
    expand3x3: int
    bypass: str = "none"

    def __post_init__(self):
        if self.bypass not in BYPASS_MODES:
            raise NetworkError(f"{self.name}: bypass must be one of {BYPASS_MODES}, not {self.bypass!r}")
        if self.bypass == "simple" and self.in_ch != self.out_ch:
            raise NetworkError(
                f"{self.name}: simple bypass needs in_ch == expand1x1 + expand3x3 "
                f"({self.in_ch} != {self.out_ch}); use bypass='complex' for a 1x1 conv on the path")

    @property
    def out_ch(self) -> int:
        return self.expand1x1 + self.expand3x3

    def out_hw(self, h: int, w: int) -> tuple[int, int]:
        return h, w

    @property
    def convs(self) -> tuple[Conv, ...]:
        """The Fire's convolutions, in the order their weights are stored."""
        out = [
            Conv(f"{self.name}.squeeze", self.in_ch, self.squeeze, 1, 1, 0, True),
            Conv(f"{self.name}.expand1x1", self.squeeze, self.expand1x1, 1, 1, 0, True),
            Conv(f"{self.name}.expand3x3", self.squeeze, self.expand3x3, 3, 1, 1, True),
        ]
        if self.bypass == "complex":
            out.append(Conv(f"{self.name}.bypass", self.in_ch, self.out_ch, 1, 1, 0, False))
        return tuple(out)


@dataclass(frozen=True)
class Head:
    """Final 1x1 conv + ReLU + global average pool over the whole feature map -> class scores."""
    name: str
    in_ch: int
    classes: int

    @property
    def conv(self) -> Conv:
        return Conv(self.name, self.in_ch, self.classes, 1, 1, 0, True)

    def out_hw(self, h: int, w: int) -> tuple[int, int]:
        return 1, 1


Layer = Conv | MaxPool | Fire | Head


@dataclass(frozen=True)
class Network:
    """A SqueezeNet-family network: input shape, preprocessing, layers, and float weights.

    ``mean``/``std`` describe the float model's input normalisation applied to pixels scaled to
    [0, 1]: ``x = (pixel / 255 - mean[c]) / std[c]``.  ``weights[conv.name] = (W, b)`` as float32
    arrays in PyTorch layout (out, in, k, k) and (out,).
    """
    name: str
    in_ch: int
    height: int
    width: int
    layers: tuple
    weights: dict = field(default_factory=dict, compare=False, repr=False)
    mean: tuple = (0.0,)
    std: tuple = (1.0,)
    resize: int | None = None        # preprocessing for photographs: Resize(resize) ...
    labels: tuple | None = None       # optional class names

    def __post_init__(self):
        self.validate()

    # --- walking -------------------------------------------------------------------------------
    def convs(self) -> list[Conv]:
        """Every convolution in weight order."""
        out = []
        for layer in self.layers:
            if isinstance(layer, Conv):
                out.append(layer)
            elif isinstance(layer, Fire):
                out.extend(layer.convs)
            elif isinstance(layer, Head):
                out.append(layer.conv)
        return out

    def shapes(self) -> list[tuple[int, int, int]]:
        """(C, H, W) at the output of every layer (index i = after layers[i])."""
        c, h, w = self.in_ch, self.height, self.width
        out = []
        for layer in self.layers:
            h, w = layer.out_hw(h, w)
            if isinstance(layer, Conv):
                c = layer.out_ch
            elif isinstance(layer, Fire):
                c = layer.out_ch
            elif isinstance(layer, Head):
                c = layer.classes
            out.append((c, h, w))
        return out

    @property
    def head(self) -> Head:
        return self.layers[-1]

    @property
    def classes(self) -> int:
        return self.head.classes

    def macs(self) -> dict[str, int]:
        """Multiply-accumulates per frame, per convolution."""
        out = {}
        c, h, w = self.in_ch, self.height, self.width
        for layer in self.layers:
            ho, wo = layer.out_hw(h, w)
            if isinstance(layer, Conv):
                out[layer.name] = layer.macs(ho, wo)
            elif isinstance(layer, Fire):
                for conv in layer.convs:
                    out[conv.name] = conv.macs(h, w)
            elif isinstance(layer, Head):
                out[layer.name] = layer.conv.macs(h, w)
            h, w = ho, wo
        return out

    def param_count(self) -> int:
        return sum(int(np.prod(c.weight_shape)) + c.out_ch for c in self.convs())

    def with_weights(self, weights: dict) -> "Network":
        return dataclasses.replace(self, weights=dict(weights))

    # --- checks --------------------------------------------------------------------------------
    def validate(self):
        if not self.layers or not isinstance(self.layers[-1], Head):
            raise NetworkError(f"{self.name}: the last layer must be the head "
                               "(final 1x1 conv + ReLU + global average pool)")
        if len(self.mean) != self.in_ch or len(self.std) != self.in_ch:
            raise NetworkError(f"{self.name}: mean/std need one value per input channel ({self.in_ch})")
        c, h, w = self.in_ch, self.height, self.width
        for layer in self.layers:
            if isinstance(layer, Head) and layer is not self.layers[-1]:
                raise NetworkError(f"{layer.name}: the head must be the last layer")
            need = getattr(layer, "in_ch", c)
            if need != c:
                raise NetworkError(f"{layer.name}: expects {need} input channels but receives {c}")
            k = getattr(layer, "kernel", 1)
            if isinstance(layer, (Conv, MaxPool)) and h + 2 * getattr(layer, "padding", 0) < k:
                raise NetworkError(f"{layer.name}: a {k}x{k} window does not fit a {h}x{w} input; "
                                   "use a larger input size or fewer pooling stages")
            h, w = layer.out_hw(h, w)
            if h < 1 or w < 1:
                raise NetworkError(f"{layer.name}: the feature map shrinks to {h}x{w}")
            c = {Conv: lambda l: l.out_ch, Fire: lambda l: l.out_ch,
                 Head: lambda l: l.classes}.get(type(layer), lambda l: c)(layer)
        for conv in self.convs() if self.weights else ():
            if conv.name not in self.weights:
                raise NetworkError(f"weights for {conv.name} are missing")
            wt, b = self.weights[conv.name]
            if tuple(wt.shape) != conv.weight_shape or tuple(b.shape) != (conv.out_ch,):
                raise NetworkError(
                    f"{conv.name}: weight shape {tuple(wt.shape)} / bias {tuple(b.shape)} does not match "
                    f"the architecture ({conv.weight_shape} / ({conv.out_ch},))")
            if not (np.all(np.isfinite(wt)) and np.all(np.isfinite(b))):
                raise NetworkError(f"{conv.name}: weights contain NaN or infinity")

    def describe(self) -> str:
        lines = [f"{self.name}: input {self.in_ch}x{self.height}x{self.width}, "
                 f"{self.param_count():,} parameters, {sum(self.macs().values()):,} MACs/frame"]
        for layer, (c, h, w) in zip(self.layers, self.shapes()):
            lines.append(f"  {layer.name:<22} {type(layer).__name__:<8} -> {c}x{h}x{w}")
        return "\n".join(lines)


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def bits_for_unsigned(value: int) -> int:
    return max(1, int(value).bit_length())


def bits_for_signed(lo: int, hi: int) -> int:
    """Two's complement width that holds every integer in [lo, hi]."""
    n = 1
    while not (-(1 << (n - 1)) <= lo and hi <= (1 << (n - 1)) - 1):
        n += 1
    return n

