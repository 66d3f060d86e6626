"""The constants of the .dzip format, once (docs/FORMAT.md is the prose of the same facts).

    magic "DZIP" | u16 version | u16 flags | u64 header_len | header (deflated UTF-8 JSON) | payload | u32 crc32
"""
from __future__ import annotations

import math
import struct

import torch

from ..limits import FILE_NAME, MAX_FILES, MAX_INDEX_BITS  # noqa: F401 (the format's limits, read from here)
from . import _tables

MAGIC = b"DZIP"
VERSION = 6  # the newest this deepzip reads
LEAN_VERSION = 3  # streams back to back without offsets or checksums of their own; code tables in the payload
LEFT_VERSION = 4  # "context-left" streams (code models chosen by the left neighbour's code); a file
# without one is written as version 3, so version 3 readers read every file that does not need 4
SCALES_VERSION = 5  # shared entries with a scale per row ("scales"); written only by a file that has one
FILES_VERSION = 6  # files carried beside the tensors (a tokenizer); written only by a file that carries one
PREAMBLE = struct.Struct("<4sHHQ")
TRAILER = struct.Struct("<I")
MAX_HEADER_BYTES = 256 << 20  # no real header comes near this; it bounds what a hostile file can make us parse
FLAG_DEFLATE = 1  # header is zlib-deflated: its JSON (tables, recipe) is a tenth of a small model's file

# Tensor entries.
# The closed lists are generated from tables.toml (python src/deepzip/dzip/tables.py), with C's and JS's.
ENCODINGS = _tables.ENCODING_NAMES_IN_FIELD  # an entry's "encoding" (an alias is a key of its own)
POSITIONS = _tables.POSITION_NAMES_IN_FIELD  # "context": one context-coded stream holds positions and codes
STORED_FLOATS = ("float32", "float16")  # how a float32 tensor's values, or a codebook, may be stored
# The fields of an entry that name a stream.
STREAM_KEYS = _tables.STREAM_KEYS
MAX_DIMS = 8
MAX_DIM = 1 << 48  # no tensor side comes near; bounds a shape whose product is 0 (the budget cannot)
DTYPES = {name: getattr(torch, name) for name in _tables.DTYPE_NAMES}
# A file may not claim more elements than this many per byte of its size: 1024× smaller than
# float32, five times past the best ratios published, and a hard cap on what a hostile file
# can make the reader allocate.
MAX_ELEMENTS_PER_BYTE = 256

# Writer choices.
CODERS = ("huffman", "ans", "context", "auto")
PAPER_INDEX_BITS = {"conv": 8, "linear": 5, "embedding": 8, "default": 8}
AUTO_WIDTHS = range(2, 11)


def grid_shape(shape) -> tuple[int, int]:
    """The matrix a tensor's codes are laid out as, for live bitmaps and the context coder: rows =
    dim 0 (output units), columns = the rest (inputs × kernel); a vector is one row.

    Examples:
        >>> grid_shape((50, 20, 5, 5)), grid_shape((300,))
        ((50, 500), (1, 300))
    """
    shape = tuple(int(d) for d in shape)
    if len(shape) < 2:
        return 1, math.prod(shape)
    return shape[0], math.prod(shape[1:])
