"""Limits that several layers enforce, defined once (the format's, the coders', the stages')."""

MAX_SHARE_BITS = 12  # k-means codebooks: 2^12 − 1 centroids; the context coder's trees are sized by it
MAX_RATE_BITS = 8    # rate training's codebooks: the rate term prices every code of every weight each step
MAX_INDEX_BITS = 16  # the relative index's widest gap in the file (docs/FORMAT.md): alphabets ≤ 65536

# Files a .dzip carries beside its tensors (format version 6): at most this many, each named by
# one or two path segments of letters, digits, "_", "-" and "." (not first), so that a name is
# safe to write inside a directory and the same in every reader.
MAX_FILES = 64
FILE_NAME = r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}(/[A-Za-z0-9_-][A-Za-z0-9._-]{0,63})?"
