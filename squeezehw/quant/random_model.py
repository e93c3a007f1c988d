"""Random integer models for tests and simulations: any SqueezeNet-family shape, no training.

Weights are uniform over the full w_bits range and the requantisation multipliers are chosen from
the accumulators' spread, so outputs cover 0..255 instead of saturating or collapsing to zero --
a test on them exercises real arithmetic.
"""
from __future__ import annotations

import numpy as np

from .intmodel import MULT_BITS, IntModel, QAdd, QConv, QFire, QHead, QMaxPool, requant_params

__all__ = ["random_conv", "random_fire", "random_model"]


def random_conv(rng: np.random.Generator, name: str, cin: int, cout: int, k: int = 1, stride: int = 1,
                pad: int = 0, *, relu: bool = True, w_bits: int = 8, in_signed: bool = False) -> QConv:
    lim = (1 << (w_bits - 1)) - 1
    w = rng.integers(-lim, lim + 1, size=(cout, cin, k, k)).astype(np.int8)
    n = cin * k * k
    # accumulator spread for inputs spread over 0..255: about sqrt(n) * |w| * 128
    spread = max(1.0, np.sqrt(n) * lim * 0.6 * 128)
    bias = rng.integers(-int(spread), int(spread) + 1, size=cout).astype(np.int64)
    mult, shift = np.zeros(cout, np.int64), np.zeros(cout, np.int64)
    for o in range(cout):
        mult[o], shift[o] = requant_params(float(rng.uniform(0.5, 2.0)) * 128 / spread)
    return QConv(name, cin, cout, k, stride, pad, relu, w, bias, mult, shift, w_bits, in_signed,
                 w_scale=np.ones(cout))


def random_fire(rng, name: str, cin: int, s: int, e1: int, e3: int, bypass: str = "none") -> QFire:
    sq = random_conv(rng, f"{name}.squeeze", cin, s)
    x1 = random_conv(rng, f"{name}.expand1x1", s, e1)
    x3 = random_conv(rng, f"{name}.expand3x3", s, e3, 3, 1, 1)
    add = None
    if bypass != "none":
        conv = random_conv(rng, f"{name}.bypass", cin, e1 + e3, relu=False) if bypass == "complex" else None
        ma, sh = requant_params(float(rng.uniform(0.3, 0.7)))
        # both multipliers of a bypass add are MULT_BITS wide (the quantizer's add_params)
        mb = min(int(ma * float(rng.uniform(0.3, 1.2))), (1 << MULT_BITS) - 1)
        add = QAdd(f"{name}.add", ma, mb, sh, conv)
    return QFire(name, sq, x1, x3, add)


def random_model(rng, *, in_ch: int = 1, size: int = 12, conv1: tuple = (8, 3, 1, 0),
                 fires: tuple = ((4, 8, 8, "complex"), (4, 8, 8, "simple")), pool_after: tuple = (0,),
                 classes: int = 5, name: str = "random") -> IntModel:
    """conv1 = (channels, kernel, stride, padding); fires = ((s, e1, e3, bypass), ...);
    pool_after: 0 = after conv1, i = after the i-th Fire."""
    c1, k1, s1, p1 = conv1
    layers = [random_conv(rng, "features.0", in_ch, c1, k1, s1, p1)]
    c, idx = c1, 1
    if 0 in pool_after:
        layers.append(QMaxPool(f"features.{idx}"))
        idx += 1
    for i, (s, e1, e3, by) in enumerate(fires, start=1):
        layers.append(random_fire(rng, f"features.{idx}", c, s, e1, e3, by))
        c, idx = e1 + e3, idx + 1
        if i in pool_after:
            layers.append(QMaxPool(f"features.{idx}"))
            idx += 1
    layers.append(QHead("classifier.1", random_conv(rng, "classifier.1", c, classes)))
    return IntModel(name, in_ch, size, size, layers)
