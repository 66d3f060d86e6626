"""VGG-16 and VGG-19 with batch norm, in the CIFAR form (Simonyan & Zisserman 2015; the
one-layer classifier of the common CIFAR ports, e.g. kuangliu/pytorch-cifar)."""
from __future__ import annotations

from torch import nn

from . import register
from .common import conv_bn, scaled

# Output channels of each 3×3 conv; "M" is a 2×2 max-pool.
CONFIGS = {
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


def vgg(depth: int, in_channels: int, classes: int, width: float) -> nn.Module:
    layers: list[nn.Module] = []
    channels = in_channels
    for item in CONFIGS[depth]:
        if item == "M":
            # ceil_mode lets five halvings run on any size: 28 px goes 14, 7, 4, 2, 1 instead
            # of reaching 0 at the fifth pool. At 32 px it changes nothing.
            layers.append(nn.MaxPool2d(2, ceil_mode=True))
        else:
            layers += [*conv_bn(channels, scaled(item, width)), nn.ReLU()]
            channels = scaled(item, width)
    model = nn.Sequential()
    model.add_module("features", nn.Sequential(*layers))
    # At 32 px the map is already 1×1; the pool makes larger images work unchanged.
    model.add_module("pool", nn.AdaptiveAvgPool2d(1))
    model.add_module("flatten", nn.Flatten())
    # One Linear, as in the CIFAR ports whose ≈14.7 M VGG-16 is the usual reference; a
    # 512-wide hidden layer would add 0.26 M parameters on top of a 1×1×512 map.
    model.add_module("fc", nn.Linear(channels, classes))
    return model


@register("vgg16")
def vgg16(in_channels: int = 1, image_size: int = 28, classes: int = 10, width: float = 1.0) -> nn.Module:
    """VGG-16-BN for small images: 13 conv-BN-ReLU layers, 5 max-pools, Linear(512, classes).

    14,724,042 parameters at 3×32×32, 10 classes (convs have no bias; BN follows each).
    """
    return vgg(16, in_channels, classes, width)


@register("vgg19")
def vgg19(in_channels: int = 1, image_size: int = 28, classes: int = 10, width: float = 1.0) -> nn.Module:
    """VGG-19-BN for small images: 16 conv-BN-ReLU layers, 5 max-pools, Linear(512, classes).

    20,035,018 parameters at 3×32×32, 10 classes.
    """
    return vgg(19, in_channels, classes, width)
