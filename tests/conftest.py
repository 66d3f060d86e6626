import importlib.util
import os
import tempfile

import pytest
import torch

# deepzip's trust list (models/sources.py) lives under DEEPZIP_HOME: the tests' own, never the user's.
os.environ["DEEPZIP_HOME"] = tempfile.mkdtemp(prefix="deepzip-home-")

# Test models are tiny: one thread beats two (no fork/join per op), and stays fast on a busy runner.
torch.set_num_threads(1)
# oneDNN 3.12 (torch 2.13's CPU wheel) corrupts the heap in mkldnn_convolution_backward_weights at
# one thread on AMD EPYC (AVX2) hosts: training resnet18 at width 1/16 aborts with "double free or
# corruption", or hangs. PyTorch's own convolution is exact and fast enough at the tests' sizes, so
# the suite runs without oneDNN; what it checks is deepzip, not which kernel PyTorch picked.
torch.backends.mkldnn.enabled = False


# Triton's interpreter runs the GPU kernels on the CPU (tests/test_triton.py). It has to be on
# when triton is first imported, because triton decorates its own language functions then; so
# triton is imported here, once, and every other test runs with the interpreter off, where
# deepzip never picks the kernels on a CPU.
INTERPRETED = not torch.cuda.is_available() and importlib.util.find_spec("triton") is not None
if INTERPRETED:
    os.environ["TRITON_INTERPRET"] = "1"
    import triton.language  # noqa: F401


@pytest.fixture(autouse=True)
def _seed(request, monkeypatch):
    torch.manual_seed(0)
    if INTERPRETED and request.path.name != "test_triton.py":
        monkeypatch.setenv("TRITON_INTERPRET", "0")


@pytest.fixture
def tiny_mlp():
    from deepzip.models import create

    return create("lenet300", in_channels=1, image_size=8, classes=4)
