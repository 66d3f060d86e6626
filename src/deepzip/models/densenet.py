"""DenseNet-BC for small images (Huang et al. 2017): three dense blocks of bottleneck layers,
joined by transitions that halve the channels (compression 0.5) and the resolution."""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from . import register


def _bn_relu_conv(in_channels: int, out_channels: int, kernel: int) -> list[nn.Module]:
    # Pre-activation order, as in the paper; the conv has no bias since a BN follows it in the
    # next layer anyway.
    return [nn.BatchNorm2d(in_channels), nn.ReLU(),
            nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2, bias=False)]


class DenseLayer(nn.Module):
    """x → concat(x, 3×3(1×1(x))): the 1×1 bottleneck gives the 3×3 4·growth inputs, however
    many channels have piled up before it."""

    def __init__(self, in_channels: int, growth: int) -> None:
        super().__init__()
        self.body = nn.Sequential(*_bn_relu_conv(in_channels, 4 * growth, 1), *_bn_relu_conv(4 * growth, growth, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.body(x)], 1)


@register("densenet100")
def densenet100(in_channels: int = 1, image_size: int = 28, classes: int = 10,
                depth: int = 100, growth: int = 12) -> nn.Module:
    """DenseNet-BC, depth 100, growth rate 12: three blocks of (depth − 4) / 6 = 16 layers.

    769,162 parameters at 3×32×32, 10 classes (the paper's "0.8 M").
    """
    if depth < 10 or (depth - 4) % 6:
        raise ConfigError(f"DenseNet-BC depth must be 6·n + 4 with n ≥ 1 (10, 16, …, 100, …), not {depth}")
    if growth < 1:
        raise ConfigError(f"growth must be ≥ 1, not {growth}")
    per_block = (depth - 4) // 6
    channels = 2 * growth
    model = nn.Sequential()
    model.add_module("stem", nn.Conv2d(in_channels, channels, 3, padding=1, bias=False))
    for b in range(1, 4):
        layers = []
        for _ in range(per_block):
            layers.append(DenseLayer(channels, growth))
            channels += growth
        model.add_module(f"block{b}", nn.Sequential(*layers))
        if b < 3:
            out = channels // 2
            model.add_module(f"transition{b}", nn.Sequential(*_bn_relu_conv(channels, out, 1), nn.AvgPool2d(2)))
            channels = out
    model.add_module("norm", nn.BatchNorm2d(channels))
    model.add_module("relu", nn.ReLU())
    model.add_module("pool", nn.AdaptiveAvgPool2d(1))
    model.add_module("flatten", nn.Flatten())
    model.add_module("fc", nn.Linear(channels, classes))
    return model
