"""SqueezeNet v1.1 (Iandola et al. 2016) for small images, and its Fire module.

The paper's three rules for small CNNs, which `Fire` and `fire_channels` serve (fire.py applies
them to LeNet-5 and VGG-16):
  1. make most filters 1×1 (pct3x3: the fraction of expand filters that stay k×k);
  2. feed the k×k filters few channels, through a 1×1 squeeze layer (squeeze_ratio: squeeze
     filters per expand filter);
  3. downsample late, so the convolutions see large activation maps.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from . import register
from .common import conv_bn, scaled


def _unit(in_channels: int, out_channels: int, kernel: int, batch_norm: bool) -> nn.Sequential:
    layers = conv_bn(in_channels, out_channels, kernel) if batch_norm else \
        [nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2)]
    return nn.Sequential(*layers, nn.ReLU())


class Fire(nn.Module):
    """squeeze 1×1 → ReLU → [expand 1×1 ‖ expand k×k] → ReLU, concatenated (1×1 channels first).

    `kernel` is 3 in SqueezeNet; lenet5-fire keeps LeNet's 5. With batch_norm, a BN sits between
    each conv and its ReLU (and the convs drop their bias), for deep stacks that need it.
    """

    def __init__(self, in_channels: int, squeeze: int, expand1x1: int, expand_k: int,
                 kernel: int = 3, batch_norm: bool = False) -> None:
        super().__init__()
        self.squeeze = _unit(in_channels, squeeze, 1, batch_norm)
        self.expand1x1 = _unit(squeeze, expand1x1, 1, batch_norm)
        self.expand_k = _unit(squeeze, expand_k, kernel, batch_norm)
        self.out_channels = expand1x1 + expand_k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.squeeze(x)
        return torch.cat([self.expand1x1(s), self.expand_k(s)], 1)


def fire_channels(expand: int, squeeze_ratio: float, pct3x3: float) -> tuple[int, int, int]:
    """(squeeze, expand 1×1, expand k×k) of a Fire module with `expand` output channels.

    Both expand branches keep at least one filter, so every Fire has the same set of layers.
    """
    if not 0 < pct3x3 < 1:
        raise ConfigError(f"pct3x3 must be between 0 and 1 (exclusive), not {pct3x3}")
    if not squeeze_ratio > 0:
        raise ConfigError(f"squeeze_ratio must be > 0, not {squeeze_ratio}")
    if expand < 2:
        raise ConfigError(f"a Fire module needs at least 2 expand channels, not {expand}")
    k = min(expand - 1, max(1, round(expand * pct3x3)))
    return max(1, round(expand * squeeze_ratio)), expand - k, k


def add_head(model: nn.Sequential, channels: int, classes: int) -> None:
    """SqueezeNet's classifier: a 1×1 conv to one map per class, averaged over the image.

    The paper's ReLU after that conv is left out: it clamps logits at 0, and a class whose map
    is negative everywhere then gets no gradient at all.
    """
    model.add_module("classifier", nn.Conv2d(channels, classes, 1))
    model.add_module("pool", nn.AdaptiveAvgPool2d(1))
    model.add_module("flatten", nn.Flatten())


# v1.1's Fire modules as (squeeze, expand 1×1, expand 3×3); "M" is a 3×3 stride-2 max-pool.
V1_1 = ["M", (16, 64, 64), (16, 64, 64), "M", (32, 128, 128), (32, 128, 128), "M",
        (48, 192, 192), (48, 192, 192), (64, 256, 256), (64, 256, 256)]


@register("squeezenet")
def squeezenet(in_channels: int = 1, image_size: int = 28, classes: int = 10, width: float = 1.0) -> nn.Module:
    """SqueezeNet v1.1 with a 3×3 stride-1 stem: at 32 px the paper's stride-2 stem would leave
    the Fire modules maps of 8 to 2 pixels; this way they see 16 to 4.

    727,626 parameters at 3×32×32, 10 classes (v1.1 at ImageNet: 1,235,496, of which 513,000
    are its 1000-class classifier).
    """
    channels = scaled(64, width)
    model = nn.Sequential()
    model.add_module("stem", nn.Sequential(nn.Conv2d(in_channels, channels, 3, padding=1), nn.ReLU()))
    fires = 1
    for item in V1_1:
        if item == "M":
            # Named like v1.1's Caffe layers (pool1, pool3, pool5), whose ceil_mode this keeps.
            model.add_module(f"pool{fires}", nn.MaxPool2d(3, 2, ceil_mode=True))
            continue
        fires += 1
        fire = Fire(channels, *(scaled(c, width) for c in item))
        model.add_module(f"fire{fires}", fire)
        channels = fire.out_channels
    model.add_module("dropout", nn.Dropout(0.5))
    add_head(model, channels, classes)
    return model
