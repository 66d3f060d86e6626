"""Pieces the zoo's factories share."""
from __future__ import annotations

from torch import nn

from ..errors import ConfigError


def scaled(channels: int, width: float) -> int:
    """`channels` × `width`, at least 1: lets tests build the same topology a few kB in size."""
    if not width > 0:
        raise ConfigError(f"width must be > 0, not {width}")
    return max(1, round(channels * width))


def conv_bn(in_channels: int, out_channels: int, kernel: int = 3, stride: int = 1) -> list[nn.Module]:
    """A 'same'-padded conv and its batch norm. The conv has no bias: BN's shift cancels it, and
    an unused parameter would still cost bytes in every .dzip."""
    return [nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, bias=False),
            nn.BatchNorm2d(out_channels)]
