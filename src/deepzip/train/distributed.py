"""Several processes, one model: PyTorch's own distributed engine, as `torchrun` starts it.

Under `torchrun --nproc_per_node=N -m deepzip compress …` every process (rank) holds the whole
model. Training wraps it in DistributedDataParallel, so gradients are averaged across ranks
after every backward (masked gradients are zeroed before that by the mask hooks, and a
codebook's gradient is the grouped sum on every rank before it is averaged); each rank reads its
share of every global batch, in an order all ranks draw from the same seeded generator.
Everything else is computed identically on every rank from identical weights (magnitude
thresholds, k-means codebooks, dead inputs, channel importance): no rank ever decides alone,
so masks and codebooks stay bit-identical. Only rank 0 writes files and logs.

gloo is used on CPU and nccl on CUDA, chosen from the device.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """(rank, number of ranks); (0, 1) outside a distributed run."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    """Whether this process writes files and logs (rank 0, or the only process)."""
    return world()[0] == 0


def init_from_env(device: torch.device) -> bool:
    """Join the process group torchrun describes in the environment (WORLD_SIZE > 1), once.

    Returns whether this is a distributed run. On CUDA each rank takes the GPU of its LOCAL_RANK.

    Examples:
        >>> init_from_env(torch.device("cpu"))   # under torchrun --nproc_per_node=2: True
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available():
        return False
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return True


def local_device(device: torch.device) -> torch.device:
    """This rank's device: its own GPU under torchrun on CUDA."""
    if device.type == "cuda" and world()[1] > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def barrier() -> None:
    """Wait for every rank (nothing outside a distributed run)."""
    if world()[1] > 1:
        dist.barrier()


def sum_all(*values: float) -> list[float]:
    """The sums of `values` over all ranks (the values themselves outside a distributed run)."""
    if world()[1] == 1:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    return t.cpu().tolist()
