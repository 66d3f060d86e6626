import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def tiny_mlp():
    from deepzip.models import create

    return create("lenet300", in_channels=1, image_size=8, classes=4)
