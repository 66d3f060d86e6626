"""Minibatches of an in-memory Dataset.

torch's DataLoader is built for sets read from disk by worker processes; here the whole split
is already one tensor, and on a couple of cores its per-batch overhead costs more than the
indexing it wraps.
"""
from __future__ import annotations

from collections.abc import Iterator

import torch

from ..errors import ConfigError
from . import Dataset


class Batches:
    """Iterate (x, y) minibatches of `data`; each `for` loop over it is one epoch.

    With `shuffle`, every epoch visits the samples in a fresh random order. A `seed` makes the
    orders reproducible: epoch e of two Batches built with the same seed sees the same order.
    Without one, the orders come from torch's global generator (so `torch.manual_seed` fixes
    them too). The last batch is smaller when `batch_size` does not divide the set.
    """

    def __init__(self, data: Dataset, batch_size: int, *, shuffle: bool = False, seed: int | None = None):
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, not {batch_size}.")
        self.data = data
        self.batch_size = batch_size
        self.shuffle = shuffle
        self._generator = None if seed is None else torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return -(-len(self.data.y) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        x, y, n = self.data.x, self.data.y, len(self.data.y)
        if not self.shuffle:
            # Slices are views: no copy of the set per epoch.
            for start in range(0, n, self.batch_size):
                yield x[start : start + self.batch_size], y[start : start + self.batch_size]
            return
        # Drawn when the epoch starts, so the generator advances one permutation per epoch.
        order = torch.randperm(n, generator=self._generator)
        for start in range(0, n, self.batch_size):
            chosen = order[start : start + self.batch_size]
            yield x[chosen], y[chosen]
