"""PyTorch SqueezeNets with torchvision's exact module layout and state_dict keys.

torchvision is not a dependency, so ``squeezenet1_0``/``squeezenet1_1`` here are written out the way
torchvision writes them (``features`` Sequential with a ReLU module after conv1, ``Fire`` modules
with ``squeeze``/``expand1x1``/``expand3x3`` and their ``*_activation`` ReLUs, ``classifier`` =
Dropout, final 1x1 conv, ReLU, AdaptiveAvgPool2d((1, 1)), and a flatten in ``forward``).  A
torchvision state dict loads into them with ``strict=True`` and vice versa.

``FamilyNet`` builds any ``FamilyConfig`` (squeezehw.frontend.family) with the same conventions.  Its Fires
may carry a bypass (``BypassFire``): ``simple`` adds the Fire input, ``complex`` adds a 1x1 conv of
it (``bypass``, no ReLU), and a ReLU follows the add -- squeezehw's documented family definition
(docs/numerics.md, *Bypass add*).
"""
from __future__ import annotations

import torch
from torch import nn

from .ir import NetworkError

__all__ = ["Fire", "BypassFire", "SqueezeNet", "FamilyNet", "squeezenet1_0", "squeezenet1_1"]


class Fire(nn.Module):
    """torchvision's Fire: squeeze 1x1 + ReLU, then expand 1x1 + ReLU || expand 3x3 (pad 1) + ReLU,
    concatenated [expand1x1, expand3x3] along channels."""

    def __init__(self, inplanes: int, squeeze_planes: int, expand1x1_planes: int, expand3x3_planes: int):
        super().__init__()
        self.inplanes = inplanes
        self.squeeze = nn.Conv2d(inplanes, squeeze_planes, kernel_size=1)
        self.squeeze_activation = nn.ReLU(inplace=True)
        self.expand1x1 = nn.Conv2d(squeeze_planes, expand1x1_planes, kernel_size=1)
        self.expand1x1_activation = nn.ReLU(inplace=True)
        self.expand3x3 = nn.Conv2d(squeeze_planes, expand3x3_planes, kernel_size=3, padding=1)
        self.expand3x3_activation = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze_activation(self.squeeze(x))
        return torch.cat([self.expand1x1_activation(self.expand1x1(x)),
                          self.expand3x3_activation(self.expand3x3(x))], 1)


class BypassFire(Fire):
    """A Fire with the SqueezeNet paper's bypass: out = relu(fire(x) + term), where term is ``x``
    (``bypass_mode='simple'``, needs in == out channels) or ``self.bypass(x)``, a 1x1 conv without
    ReLU (``'complex'``)."""

    def __init__(self, inplanes: int, squeeze_planes: int, expand1x1_planes: int, expand3x3_planes: int,
                 *, bypass_mode: str):
        super().__init__(inplanes, squeeze_planes, expand1x1_planes, expand3x3_planes)
        out = expand1x1_planes + expand3x3_planes
        if bypass_mode == "simple":
            if inplanes != out:
                raise NetworkError(f"BypassFire: simple bypass needs in == out channels ({inplanes} != {out}); "
                                   "use bypass_mode='complex'")
        elif bypass_mode == "complex":
            self.bypass = nn.Conv2d(inplanes, out, kernel_size=1)
        else:
            raise NetworkError(f"BypassFire: bypass_mode must be 'simple' or 'complex', not {bypass_mode!r}")
        self.bypass_mode = bypass_mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)
        term = x if self.bypass_mode == "simple" else self.bypass(x)
        return torch.relu(y + term)


def _init_like_torchvision(model: nn.Module, final_conv: nn.Conv2d) -> None:
    # torchvision: kaiming_uniform_ for every conv, normal(0, 0.01) for the final conv, zero biases.
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            if m is final_conv:
                nn.init.normal_(m.weight, mean=0.0, std=0.01)
            else:
                nn.init.kaiming_uniform_(m.weight)
            nn.init.constant_(m.bias, 0)


def _classifier(in_ch: int, num_classes: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Dropout(p=dropout), nn.Conv2d(in_ch, num_classes, kernel_size=1),
                         nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d((1, 1)))


class SqueezeNet(nn.Module):
    """torchvision's SqueezeNet, versions '1_0' and '1_1'."""

    def __init__(self, version: str = "1_0", num_classes: int = 1000, dropout: float = 0.5):
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise NetworkError(f"SqueezeNet: num_classes must be a positive integer, not {num_classes!r}")
        self.num_classes = num_classes
        pool = lambda: nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)  # noqa: E731
        if version == "1_0":
            self.features = nn.Sequential(
                nn.Conv2d(3, 96, kernel_size=7, stride=2), nn.ReLU(inplace=True), pool(),
                Fire(96, 16, 64, 64), Fire(128, 16, 64, 64), Fire(128, 32, 128, 128), pool(),
                Fire(256, 32, 128, 128), Fire(256, 48, 192, 192), Fire(384, 48, 192, 192),
                Fire(384, 64, 256, 256), pool(), Fire(512, 64, 256, 256))
        elif version == "1_1":
            self.features = nn.Sequential(
                nn.Conv2d(3, 64, kernel_size=3, stride=2), nn.ReLU(inplace=True), pool(),
                Fire(64, 16, 64, 64), Fire(128, 16, 64, 64), pool(),
                Fire(128, 32, 128, 128), Fire(256, 32, 128, 128), pool(),
                Fire(256, 48, 192, 192), Fire(384, 48, 192, 192),
                Fire(384, 64, 256, 256), Fire(512, 64, 256, 256))
        else:
            raise NetworkError(f"SqueezeNet: version must be '1_0' or '1_1', not {version!r}")
        self.classifier = _classifier(512, num_classes, dropout)
        _init_like_torchvision(self, self.classifier[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.classifier(self.features(x)), 1)


def squeezenet1_0(num_classes: int = 1000) -> SqueezeNet:
    """SqueezeNet v1.0 (torchvision layout), randomly initialised like torchvision."""
    return SqueezeNet("1_0", num_classes)


def squeezenet1_1(num_classes: int = 1000) -> SqueezeNet:
    """SqueezeNet v1.1 (torchvision layout), randomly initialised like torchvision."""
    return SqueezeNet("1_1", num_classes)


class FamilyNet(nn.Module):
    """Any SqueezeNet-family member (``FamilyConfig``) with torchvision's layout and key names."""

    def __init__(self, config, *, dropout: float = 0.5):
        super().__init__()
        from .family import FamilyConfig
        if not isinstance(config, FamilyConfig):
            raise NetworkError(f"FamilyNet needs a FamilyConfig, not {type(config).__name__}")
        if not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise NetworkError(f"FamilyNet: dropout must be in [0, 1), not {dropout!r}")
        self.config = config
        pool = lambda: nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)  # noqa: E731
        mods = [nn.Conv2d(config.in_channels, config.conv1_channels, kernel_size=config.conv1_kernel,
                          stride=config.conv1_stride, padding=config.conv1_padding),
                nn.ReLU(inplace=True)]
        if 0 in config.pool_after:
            mods.append(pool())
        out_ch = config.conv1_channels
        for spec in config.fires():
            args = (spec.in_ch, spec.squeeze, spec.expand1x1, spec.expand3x3)
            mods.append(Fire(*args) if spec.bypass == "none" else BypassFire(*args, bypass_mode=spec.bypass))
            out_ch = spec.out_ch
            if spec.index + 1 in config.pool_after:
                mods.append(pool())
        self.features = nn.Sequential(*mods)
        self.classifier = _classifier(out_ch, config.classes, dropout)
        _init_like_torchvision(self, self.classifier[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.classifier(self.features(x)), 1)
