import os
import tempfile

import pytest
import torch

# deepzip's trust list (models/sources.py) lives under DEEPZIP_HOME: the tests' own, never the user's.
os.environ["DEEPZIP_HOME"] = tempfile.mkdtemp(prefix="deepzip-home-")

# Test models are tiny: one thread beats two (no fork/join per op), and stays fast on a busy runner.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def tiny_mlp():
    from deepzip.models import create

    return create("lenet300", in_channels=1, image_size=8, classes=4)
