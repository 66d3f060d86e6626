"""Training, validation and test data, kept apart: every choice is made on validation, and the
test split is read once, for the file that was chosen.

The validation split is the data set's own where it has one; otherwise it is held out of the
training data, a seeded random fraction of it, so the model never trains on it. A deepzip
Dataset is split by index; a torch DataLoader over a map-style dataset is split into two
DataLoaders over `Subset`s with the same batch size, collate function and workers. Any other
iterable cannot be split here: pass the validation data yourself.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import ConfigError
from . import Dataset, load, load_validation

MAX_FRACTION = 0.5


@dataclass(frozen=True)
class Splits:
    """The three splits of a run. `train` and `val` are Datasets or iterables of (inputs,
    labels) batches; `test` may be None (nothing is scored on it then). `info` says where the
    validation split came from: {"source": "own" | "held out" | "given", "fraction", "seed",
    "size"}, and the sizes of the others where known."""

    train: Any
    val: Any
    test: Any | None
    info: dict[str, Any] = field(default_factory=dict)


def check_fraction(fraction: Any) -> float:
    """A validation fraction in (0, 0.5], or ConfigError in one sentence.

    Examples:
        >>> check_fraction(0.1)
        0.1
    """
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= MAX_FRACTION:
        raise ConfigError(f"--val-split must be a fraction of the training data in (0, {MAX_FRACTION}], not "
                          f"{fraction!r}: the validation split is held out of it to choose on.")
    return float(fraction)


def size_of(data: Any) -> int | None:
    """Samples in a Dataset or a DataLoader over a sized dataset; None for other iterables."""
    if isinstance(data, Dataset):
        return len(data)
    inner = getattr(data, "dataset", None)
    try:
        return len(inner) if inner is not None else None
    except TypeError:
        return None


def holdout(data: Any, fraction: float, seed: int) -> tuple[Any, Any]:
    """(train, validation): a seeded random `fraction` of `data` held out of it.

    Args:
        data: a deepzip Dataset, or a torch DataLoader over a map-style dataset.
        fraction: in (0, 0.5].
        seed: the hold-out's own generator's seed (recorded with the run).

    Examples:
        >>> train, val = holdout(dz.data.load("digits", train=True), 0.1, seed=0)
    """
    fraction = check_fraction(fraction)
    n = size_of(data)
    if n is None:
        raise ConfigError(f"cannot hold a validation split out of a {type(data).__name__} (it is not a deepzip "
                          f"Dataset or a DataLoader over a sized dataset); pass val_data= yourself.")
    n_val = round(n * fraction)
    if n_val < 1 or n_val >= n:
        raise ConfigError(f"a validation split of {fraction:g} of {n} training samples would leave "
                          f"{'no validation' if n_val < 1 else 'no training'} samples; use more data or another "
                          f"--val-split.")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    val_idx, train_idx = order[:n_val].sort().values, order[n_val:].sort().values
    if isinstance(data, Dataset):
        return (Dataset(data.x[train_idx], data.y[train_idx], data.classes, data.name),
                Dataset(data.x[val_idx], data.y[val_idx], data.classes, f"{data.name} (validation)"))
    return _loader_over(data, train_idx, train=True), _loader_over(data, val_idx, train=False)


def _loader_over(loader: Any, indices: torch.Tensor, *, train: bool) -> Any:
    from torch.utils.data import DataLoader, RandomSampler, SequentialSampler, Subset

    if not isinstance(loader, DataLoader) or not isinstance(loader.sampler, (RandomSampler, SequentialSampler)) \
            or loader.batch_size is None:
        raise ConfigError(f"cannot hold a validation split out of this {type(loader).__name__} (a custom sampler or "
                          f"batch sampler decides its batches); pass val_data= yourself.")
    workers = loader.num_workers
    return DataLoader(Subset(loader.dataset, indices.tolist()), batch_size=loader.batch_size,
                      shuffle=train and isinstance(loader.sampler, RandomSampler), num_workers=workers,
                      collate_fn=loader.collate_fn, pin_memory=loader.pin_memory,
                      drop_last=train and loader.drop_last, timeout=loader.timeout,
                      worker_init_fn=loader.worker_init_fn, multiprocessing_context=loader.multiprocessing_context,
                      generator=loader.generator if train else None,
                      prefetch_factor=loader.prefetch_factor if workers else None,
                      persistent_workers=loader.persistent_workers if workers else False)


def split(train: Any, test: Any | None = None, *, val: Any | None = None, fraction: float = 0.1,
          seed: int = 0) -> Splits:
    """Splits from what a user brings: `val` if given, else `fraction` of `train` held out.

    Examples:
        >>> s = split(train_loader, test_loader, fraction=0.1, seed=0); s.info["val"]["size"]
    """
    if val is not None:
        info = {"source": "given", "size": size_of(val)}
    else:
        train, val = holdout(train, fraction, seed)
        info = {"source": "held out", "fraction": check_fraction(fraction), "seed": seed, "size": size_of(val)}
    return Splits(train, val, test, {"val": info, "train_size": size_of(train),
                                     "test_size": None if test is None else size_of(test)})


def load_splits(name: str, root: Any = None, *, limit: int | None = None, size: int | None = None,
                fraction: float = 0.1, seed: int = 0, test: bool = True) -> Splits:
    """A named data set's splits: its own validation split where it has one, else `fraction` of
    its (first `limit`) training samples held out with `seed`.

    Examples:
        >>> load_splits("fashion-mnist", fraction=0.1, seed=0).info["val"]
        {'source': 'held out', 'fraction': 0.1, 'seed': 0, 'size': 6000}
    """
    fraction = check_fraction(fraction)
    train = load(name, root, train=True, limit=limit, size=size)
    own = load_validation(name, root, limit=limit, size=size)
    tested = load(name, root, train=False, limit=limit, size=size) if test else None
    if own is not None:
        return Splits(train, own, tested, {"val": {"source": "own", "size": len(own)}, "train_size": len(train),
                                           "test_size": None if tested is None else len(tested)})
    return split(train, tested, fraction=fraction, seed=seed)


def example_inputs(data: Dataset | Iterable, n: int = 2) -> torch.Tensor:
    """The first `n` inputs of `data` (for tracing a model, or sizing a regressor).

    Examples:
        >>> example_inputs(train_set, 2).shape
        torch.Size([2, 1, 28, 28])
    """
    if isinstance(data, Dataset):
        return data.x[:n]
    for batch in data:
        if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], torch.Tensor):
            return batch[0][:n]
        break
    raise ConfigError("the data gives no (inputs, labels) batch to take example inputs from.")
