"""Asymmetric numeral systems (rANS) coding of integer symbol streams, by `constriction`.

ANS spends fractional bits per symbol, so it gets within a fraction of a percent of the entropy
where Huffman loses up to a bit per symbol on skewed streams (a dominant zero code, say). The
model is a fixed categorical built from integer counts, which are what a file stores: encoder
and decoder turn the same integers into the same floats, hence into the same quantized model.
"""
from __future__ import annotations

import constriction
import numpy as np

from ..errors import ConfigError, DzipFormatError
from .dtypes import symbol_dtype


def _check_counts(counts, error: type[Exception], need_symbol: bool) -> np.ndarray:
    counts = np.asarray(counts)
    if counts.ndim != 1 or counts.size == 0 or counts.dtype.kind not in "iu":
        raise error("an ANS table must be a non-empty 1-D array of integer counts.")
    if counts.min() < 0:
        raise error("an ANS table must not hold negative counts.")
    if need_symbol and not counts.any():
        raise error("the ANS table gives no symbol a nonzero count.")
    return counts


def _model(counts: np.ndarray):
    probabilities = counts.astype(np.float64)
    probabilities /= probabilities.sum()
    if len(probabilities) == 1:
        # constriction refuses a one-symbol alphabet; a dummy second symbol of count 0 costs ~1e-7 bits a symbol.
        probabilities = np.append(probabilities, 0.0)
    return constriction.stream.model.Categorical(probabilities, perfect=False)


def encode(symbols: np.ndarray, counts: np.ndarray) -> bytes:
    """Code `symbols` under the distribution `counts`; returns the coder's uint32 words, little-endian.

    Every symbol must be in range and have a nonzero count (constriction could code a zero-count
    symbol at ~24 bits, but the decoder treats one as corruption).
    """
    symbols = np.asarray(symbols)
    if symbols.ndim != 1 or (symbols.size and symbols.dtype.kind not in "iu"):
        raise ConfigError("symbols must be a 1-D array of integers.")
    counts = _check_counts(counts, ValueError, need_symbol=symbols.size > 0)
    if not symbols.size:
        return b""
    if symbols.min() < 0 or symbols.max() >= len(counts):
        raise ConfigError(f"a symbol is outside the {len(counts)}-symbol alphabet.")
    coder = constriction.stream.stack.AnsCoder()
    model = _model(counts)
    # ANS is a stack: pushing the last chunk first leaves the very stream one call would, while
    # only a chunk at a time is widened to the int32 constriction takes (and checked).
    for start in reversed(range(0, symbols.size, _CHUNK)):
        chunk = symbols[start:start + _CHUNK].astype(np.int32)
        if not counts[chunk].all():
            raise ConfigError("a symbol to encode has a zero count.")
        coder.encode_reverse(chunk, model)
    return coder.get_compressed().astype("<u4").tobytes()


_CHUNK = 1 << 22


def decode(data: bytes, counts: np.ndarray, n: int) -> np.ndarray:
    """Decode `n` symbols coded under the distribution `counts`, in the narrowest unsigned type
    the alphabet needs (dtypes.symbol_dtype), a chunk at a time.

    The caller must bound `n`: a dominant symbol can cost almost nothing, so no length of `data`
    rules out a large `n` (a file's tensor shapes do). A bad table, data that is not whole words,
    data constriction rejects, a decoded symbol of count 0, or words left over after the last
    symbol all raise DzipFormatError.
    """
    counts = _check_counts(counts, DzipFormatError, need_symbol=n > 0)
    if n < 0:
        raise DzipFormatError(f"an ANS stream cannot hold {n} symbols.")
    if len(data) % 4:
        raise DzipFormatError(f"an ANS stream is whole 32-bit words, not {len(data)} bytes.")
    out = np.empty(n, symbol_dtype(len(counts)))
    if not n:
        if data:
            raise DzipFormatError(f"an ANS stream of 0 symbols has {len(data)} bytes.")
        return out
    try:
        coder = constriction.stream.stack.AnsCoder(np.frombuffer(data, "<u4").astype(np.uint32))
        model = _model(counts)
        # A stack decodes in the order it was encoded in reverse: chunk after chunk, each
        # checked and narrowed, so only one chunk is ever int32.
        for start in range(0, n, _CHUNK):
            chunk = np.asarray(coder.decode(model, min(_CHUNK, n - start)), dtype=np.int32)
            # Decoding is a bijection only on valid streams: garbage decodes to *something*, but
            # (almost surely) not to symbols the table allows that also use up the data exactly.
            if not counts[chunk].all():
                raise DzipFormatError("the ANS stream decodes to a symbol its table gives count 0.")
            out[start:start + chunk.size] = chunk
        left_over = not coder.is_empty()
    except DzipFormatError:
        raise
    except Exception as e:  # whatever constriction finds wrong, to the caller it is a corrupt stream
        reason = " ".join(str(e).split()).rstrip(".")
        raise DzipFormatError(f"the ANS stream is corrupt: {reason}.") from None
    if left_over:
        raise DzipFormatError("the ANS stream has data left after its last symbol.")
    return out
