"""Minibatches: of an in-memory Dataset, or whatever iterable of (inputs, labels) a user brings.

torch's DataLoader is built for sets read from disk by worker processes; here the whole split
is already one tensor, and on a couple of cores its per-batch overhead costs more than the
indexing it wraps. A user's own DataLoader (or any iterable of batches) is taken as it is.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch

from ..errors import ConfigError
from . import Dataset

Batch = tuple[torch.Tensor, torch.Tensor]


class Batches:
    """Iterate (x, y) minibatches of `data`; each `for` loop over it is one epoch.

    With `shuffle`, every epoch visits the samples in a fresh random order. A `seed` makes the
    orders reproducible: epoch e of two Batches built with the same seed sees the same order.
    Without one, the orders come from torch's global generator (so `torch.manual_seed` fixes
    them too). The last batch is smaller when `batch_size` does not divide the set.

    Args:
        data: the split to batch.
        batch_size: samples per batch.
        shuffle: a new random order every epoch.
        seed: seeds the order's own generator (its state is what a checkpoint saves).

    Examples:
        >>> batches = Batches(dataset, 128, shuffle=True, seed=0)
        >>> for x, y in batches: ...
    """

    def __init__(self, data: Dataset, batch_size: int, *, shuffle: bool = False, seed: int | None = None,
                 shard: tuple[int, int] = (0, 1)):
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, not {batch_size}.")
        self.data = data
        self.batch_size = batch_size
        self.shuffle = shuffle
        # (rank, ranks): every rank draws the same order and takes every ranks-th sample of each
        # global batch, so N processes see the batches one process would (DistributedSampler's idea).
        self.rank, self.ranks = shard
        self._generator = None if seed is None else torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        n = len(self.data.y)
        full, rest = divmod(n, self.batch_size)
        # In a distributed run a last batch too small to give every rank a sample is left out.
        return full + (rest >= self.ranks if rest else 0)

    def __iter__(self) -> Iterator[Batch]:
        x, y, n = self.data.x, self.data.y, len(self.data.y)
        if self.ranks > 1:
            order = torch.randperm(n, generator=self._generator) if self.shuffle else torch.arange(n)
            for start in range(0, n, self.batch_size):
                batch = order[start : start + self.batch_size]
                if len(batch) < self.ranks:  # some rank would get nothing: every rank skips it
                    continue
                chosen = batch[self.rank :: self.ranks]
                yield x[chosen], y[chosen]
            return
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

    def state_dict(self) -> dict[str, Any]:
        """Where the epoch orders stand: restoring it makes the next epoch draw the same order."""
        return {} if self._generator is None else {"generator": self._generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self._generator is not None and "generator" in state:
            self._generator.set_state(state["generator"])


def batches(data: Dataset | Iterable[Batch], batch_size: int = 128, *, shuffle: bool = False,
            seed: int | None = None, shard: tuple[int, int] = (0, 1)) -> Iterable[Batch]:
    """Batches of a deepzip Dataset, or `data` itself when it is already an iterable of
    (inputs, labels) batches (a torch DataLoader, a list, a generator function's result).

    Args:
        data: a Dataset, or an iterable yielding (x, y) pairs of tensors.
        batch_size, shuffle, seed: how to batch a Dataset (ignored for an iterable, which
            batches itself).
        shard: (rank, ranks) of a distributed run: this rank's share of every global batch
            (an iterable is taken as already sharded, as a DataLoader with a DistributedSampler is).

    Examples:
        >>> for x, y in batches(my_dataloader): ...
    """
    if isinstance(data, Dataset):
        return Batches(data, batch_size, shuffle=shuffle, seed=seed, shard=shard)
    if isinstance(data, (torch.Tensor, str, bytes)) or not isinstance(data, Iterable):
        raise ConfigError(f"data must be a deepzip Dataset or an iterable of (inputs, labels) batches, "
                          f"not a {type(data).__name__}.")
    return data


def inputs(data: Dataset | Iterable[Batch], batch_size: int = 1000) -> Iterator[torch.Tensor]:
    """The input tensor of every batch of `data`, in order (for statistics over a data set).

    Examples:
        >>> for x in inputs(test_set): model(x)
    """
    for batch in batches(data, batch_size):
        if not (isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], torch.Tensor)):
            raise ConfigError(f"each batch must be an (inputs, labels) pair of tensors, not a {type(batch).__name__}.")
        yield batch[0]
