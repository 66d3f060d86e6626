"""Where a run's model and data come from: `Source` (a fresh model on demand) and `prepare`
(the data, split, the source and what identifies them, loaded once for a run, a search or a sweep)."""
from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch

from .. import data as datasets
from .. import models
from ..data.splits import Splits, example_inputs, load_splits
from ..models.sources import describe
from .recipe import Recipe


class Source:
    """Where a run's model comes from: `build()` gives a fresh one (the run's model, the teacher
    rebuilt after a resume, the original for a cost comparison), `key` what identifies it."""

    def __init__(self, build: Callable[[], torch.nn.Module], key: dict[str, Any], name: str) -> None:
        self.build, self.key, self.name = build, key, name

    @classmethod
    def registry(cls, recipe: Recipe, train: Any) -> Source:
        """The recipe's registry model, sized to the data: built anew each time (each build draws
        its initialisation from torch's stream, as every published figure was made)."""
        if recipe.model not in models.names():
            models.create(recipe.model)  # the registry's own one-sentence error, before anything trains
        x = example_inputs(train, 1)
        classes = train.classes if isinstance(train, datasets.Dataset) else None
        shape = {"in_channels": x.shape[1], "image_size": x.shape[2]} if x.dim() == 4 else {}
        kwargs = {**shape, **({"classes": classes} if classes is not None else {}), **recipe.model_args}
        return cls(lambda: models.create(recipe.model, **kwargs), {"registry": recipe.model}, recipe.model)

    @classmethod
    def module(cls, template: torch.nn.Module, key: dict[str, Any]) -> Source:
        """A user's module (its own class, a Hugging Face model): copies of `template`, which
        keeps how it was built (deepzip_arch) for the file."""
        template = copy.deepcopy(template).cpu()
        return cls(lambda: copy.deepcopy(template), key, describe(models.arch_of(template)))


def prepare(recipe: Recipe, *, data_dir=None, limit: int | None = None, val_split: float = 0.1,
            splits: Splits | None = None, source: Source | None = None, key: dict[str, Any] | None = None,
            test: bool = True) -> tuple[Splits, Source, dict[str, Any]]:
    """The data, model source and identifying key of a run, loaded once: a search or a sweep
    prepares them and hands them to each of its runs.

    Args:
        recipe: the run's recipe (its data set, image size and seed, when `splits` is None).
        data_dir: where the data set's files are.
        limit: use only the first N samples of each split.
        val_split: the fraction held out for validation.
        splits: data already split (returned as is).
        source: the model's source (default: the recipe's registry model).
        key: what else identifies the run.
        test: load the test split too.

    Examples:
        >>> splits, source, key = prepare(recipe, val_split=0.1)
    """
    if splits is None:
        splits = load_splits(recipe.dataset, data_dir, limit=limit, size=recipe.image_size, fraction=val_split,
                             seed=recipe.seed, test=test)
        key = {"limit": limit, "data_dir": None if data_dir is None else str(data_dir), **(key or {})}
    source = Source.registry(recipe, splits.train) if source is None else source
    return splits, source, dict(key or {})
