"""1-D k-means for weight sharing, exact and fast because the data is one-dimensional.

In 1-D, Lloyd's assignment step is a partition of the sorted values by the midpoints between
consecutive centroids, and the update step is a segment mean, which prefix sums give in O(k).
So one iteration costs O(k log n) after a single sort, instead of O(n k).
"""
from __future__ import annotations

from typing import Literal

import numpy as np

from ..errors import ConfigError

Init = Literal["linear", "density", "random"]
INITS = ("linear", "density", "random")


def initial_centroids(sorted_values: np.ndarray, k: int, init: Init, seed: int = 0) -> np.ndarray:
    """The paper's three initialisations (its Figure 4): linear won, because it keeps large weights."""
    lo, hi = sorted_values[0], sorted_values[-1]
    if init == "linear":
        return np.linspace(lo, hi, k)
    if init == "density":
        # Evenly spaced on the CDF's y axis: centroids crowd where weights crowd.
        return sorted_values[np.linspace(0, len(sorted_values) - 1, k).round().astype(np.int64)]
    if init == "random":
        rng = np.random.default_rng(seed)
        return np.sort(rng.choice(sorted_values, size=k, replace=False))
    raise ConfigError(f"k-means init must be one of {', '.join(INITS)}, not {init!r}.")


def kmeans_1d(values: np.ndarray, k: int, init: Init = "linear", max_iter: int = 100, seed: int = 0
              ) -> tuple[np.ndarray, np.ndarray]:
    """Cluster `values` into at most k groups.

    Returns (centroids, labels): centroids sorted ascending with empty clusters dropped, and for
    each value the index of its centroid. Centroids are float64 means of their members.
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    if k < 1:
        raise ConfigError(f"k-means needs k ≥ 1, not {k}.")
    if values.size == 0:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    order = np.argsort(values, kind="stable")
    xs = values[order]
    distinct = np.unique(xs)
    if distinct.size <= k:
        return distinct, np.searchsorted(distinct, values)
    prefix = np.concatenate(([0.0], np.cumsum(xs)))
    centroids = np.sort(initial_centroids(xs, k, init, seed))
    splits = None
    for _ in range(max_iter):
        # Segment j holds the sorted values nearest centroid j.
        new_splits = np.searchsorted(xs, (centroids[:-1] + centroids[1:]) / 2, side="right")
        if splits is not None and np.array_equal(new_splits, splits):
            break
        splits = new_splits
        bounds = np.concatenate(([0], splits, [xs.size]))
        sizes = np.diff(bounds)
        sums = prefix[bounds[1:]] - prefix[bounds[:-1]]
        # An empty cluster keeps its centroid; it is dropped at the end if it stays empty.
        centroids = np.sort(np.where(sizes > 0, sums / np.maximum(sizes, 1), centroids))
    bounds = np.concatenate(([0], np.searchsorted(xs, (centroids[:-1] + centroids[1:]) / 2, side="right"), [xs.size]))
    sizes = np.diff(bounds)
    used = sizes > 0
    sums = prefix[bounds[1:]] - prefix[bounds[:-1]]
    centroids = sums[used] / sizes[used]
    sorted_labels = np.repeat(np.arange(centroids.size), sizes[used])
    labels = np.empty_like(sorted_labels)
    labels[order] = sorted_labels
    return centroids, labels
