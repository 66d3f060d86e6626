"""ResNet-18 and ResNet-50 in the CIFAR form (He et al. 2016): a 3×3 stem and no max-pool, so
32 px images keep their resolution into the first stage; four stages at 64-128-256-512."""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from . import register
from .common import conv_bn, scaled

# (in_channels, planes, stride) → (block, its output channels)
BlockFactory = Callable[[int, int, int], tuple[nn.Module, int]]


def _conv_bn(in_channels: int, out_channels: int, kernel: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(*conv_bn(in_channels, out_channels, kernel, stride))


class _Block(nn.Module):
    """relu(body(x) + shortcut(x)); the shortcut is a 1×1 conv-BN where the shape changes."""

    def __init__(self, body: nn.Sequential, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.body = body
        self.shortcut = (nn.Identity() if stride == 1 and in_channels == out_channels
                         else _conv_bn(in_channels, out_channels, 1, stride))
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


def basic_block(in_channels: int, planes: int, stride: int) -> tuple[nn.Module, int]:
    body = nn.Sequential(_conv_bn(in_channels, planes, 3, stride), nn.ReLU(), _conv_bn(planes, planes, 3))
    return _Block(body, in_channels, planes, stride), planes


def bottleneck(in_channels: int, planes: int, stride: int) -> tuple[nn.Module, int]:
    # Stride on the 3×3, as torchvision's "ResNet v1.5", not on the first 1×1.
    out = 4 * planes
    body = nn.Sequential(_conv_bn(in_channels, planes, 1), nn.ReLU(),
                         _conv_bn(planes, planes, 3, stride), nn.ReLU(),
                         _conv_bn(planes, out, 1))
    return _Block(body, in_channels, out, stride), out


def resnet(block: BlockFactory, counts: list[int], in_channels: int, classes: int, width: float) -> nn.Module:
    stem = scaled(64, width)
    model = nn.Sequential()
    model.add_module("stem", nn.Sequential(*conv_bn(in_channels, stem), nn.ReLU()))
    channels = stem
    for stage, (planes, count) in enumerate(zip((64, 128, 256, 512), counts), start=1):
        blocks = []
        for i in range(count):
            b, channels = block(channels, scaled(planes, width), 2 if stage > 1 and i == 0 else 1)
            blocks.append(b)
        model.add_module(f"layer{stage}", nn.Sequential(*blocks))
    model.add_module("pool", nn.AdaptiveAvgPool2d(1))
    model.add_module("flatten", nn.Flatten())
    model.add_module("fc", nn.Linear(channels, classes))
    return model


@register("resnet18")
def resnet18(in_channels: int = 1, image_size: int = 28, classes: int = 10, width: float = 1.0) -> nn.Module:
    """ResNet-18 for small images: basic blocks [2, 2, 2, 2].

    11,173,962 parameters at 3×32×32, 10 classes.
    """
    return resnet(basic_block, [2, 2, 2, 2], in_channels, classes, width)


@register("resnet50")
def resnet50(in_channels: int = 1, image_size: int = 28, classes: int = 10, width: float = 1.0) -> nn.Module:
    """ResNet-50 for small images: bottleneck blocks [3, 4, 6, 3], expansion 4.

    23,520,842 parameters at 3×32×32, 10 classes.
    """
    return resnet(bottleneck, [3, 4, 6, 3], in_channels, classes, width)
