"""The narrowest type that holds a stream's symbols: what decoders return.

A 100 M-weight layer's codes as int32 are 400 MB; as uint8, 100 MB. The decoders hand out
symbols in the type their alphabet needs, so loading a large model costs what its codes do.
"""
from __future__ import annotations

import numpy as np


def symbol_dtype(alphabet: int) -> np.dtype:
    """uint8 for alphabets up to 256 symbols, uint16 up to 65,536, else uint32.

    Examples:
        >>> symbol_dtype(32), symbol_dtype(300)
        (dtype('uint8'), dtype('uint16'))
    """
    if alphabet <= 1 << 8:
        return np.dtype(np.uint8)
    return np.dtype(np.uint16) if alphabet <= 1 << 16 else np.dtype(np.uint32)
