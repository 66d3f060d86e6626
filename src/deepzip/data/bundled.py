"""Data sets that need no files: scikit-learn's 8×8 digits and a synthetic set for tests.

Both ignore `root`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import Arrays, register

# The first 80 % of the 1797 digits train and the rest test. Split by index, not at random, so
# the split does not hang on a random generator's stream; the classes come roughly in turn, so
# every digit gets 141 to 146 training and 33 to 37 test samples.
_DIGITS_TRAIN = 1437

_SYNTHETIC_SHAPE = (1, 28, 28)
_SYNTHETIC_CLASSES = 10
_SYNTHETIC_SIZE = {True: 2048, False: 512}


@register("digits")
def _digits(root: Path | None, train: bool) -> Arrays:
    from sklearn.datasets import load_digits  # here, not at import: scikit-learn takes a second to load

    bunch = load_digits()  # ships inside scikit-learn: nothing is downloaded
    # Pixels count ink from 0 to 16; /16 puts them in [0, 1] like the other sets before normalising.
    x = (bunch.images / 16.0).astype(np.float32)[:, None]
    y = bunch.target
    split = slice(None, _DIGITS_TRAIN) if train else slice(_DIGITS_TRAIN, None)
    return Arrays(x[split], y[split], 10, (0.3053,), (0.3760,))


@register("synthetic")
def _synthetic(root: Path | None, train: bool) -> Arrays:
    """Each class is a fixed random image plus noise, so even a linear model learns it in one epoch.

    The class images come from one seed and each split's samples from its own, so the splits
    share classes but no samples. 0.6² + 0.8² = 1 keeps every pixel at mean 0, variance 1.
    """
    centres = np.random.default_rng(0).standard_normal((_SYNTHETIC_CLASSES, *_SYNTHETIC_SHAPE))
    rng = np.random.default_rng(1 if train else 2)
    n = _SYNTHETIC_SIZE[train]
    y = rng.permutation(np.arange(n) % _SYNTHETIC_CLASSES)  # balanced classes in random order
    x = 0.6 * centres[y] + 0.8 * rng.standard_normal((n, *_SYNTHETIC_SHAPE))
    return Arrays(x.astype(np.float32), y, _SYNTHETIC_CLASSES, (0.0,), (1.0,))
