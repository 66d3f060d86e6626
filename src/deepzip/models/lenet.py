"""The two networks of the Deep Compression paper's MNIST experiments."""
from __future__ import annotations

from torch import nn

from ..errors import ConfigError
from . import register


@register("lenet300")
def lenet300(in_channels: int = 1, image_size: int = 28, classes: int = 10) -> nn.Module:
    """LeNet-300-100: 784-300-100-10 with ReLU (266,610 parameters at 1×28×28)."""
    model = nn.Sequential()
    model.add_module("flatten", nn.Flatten())
    model.add_module("fc1", nn.Linear(in_channels * image_size * image_size, 300))
    model.add_module("relu1", nn.ReLU())
    model.add_module("fc2", nn.Linear(300, 100))
    model.add_module("relu2", nn.ReLU())
    model.add_module("fc3", nn.Linear(100, classes))
    return model


@register("lenet5")
def lenet5(in_channels: int = 1, image_size: int = 28, classes: int = 10) -> nn.Module:
    """Caffe's LeNet-5 as used by the paper: conv 20@5×5, pool, conv 50@5×5, pool, fc 500, fc 10.

    431,080 parameters at 1×28×28. Caffe's version has a single ReLU, after fc 500.
    """
    side = ((image_size - 4) // 2 - 4) // 2
    if side < 1:
        raise ConfigError(f"lenet5 needs images of at least 16 pixels a side, not {image_size}")
    model = nn.Sequential()
    model.add_module("conv1", nn.Conv2d(in_channels, 20, 5))
    model.add_module("pool1", nn.MaxPool2d(2))
    model.add_module("conv2", nn.Conv2d(20, 50, 5))
    model.add_module("pool2", nn.MaxPool2d(2))
    model.add_module("flatten", nn.Flatten())
    model.add_module("fc1", nn.Linear(50 * side * side, 500))
    model.add_module("relu1", nn.ReLU())
    model.add_module("fc2", nn.Linear(500, classes))
    return model
