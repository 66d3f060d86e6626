import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepzip.encode.floats import HIGH_ALPHABET, join_float32, split_float32
from deepzip.errors import DzipFormatError


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(width=32, allow_nan=True, allow_infinity=True), max_size=300))
def test_every_float32_bit_pattern_comes_back(values):
    v = np.array(values, np.float32)
    high, low = split_float32(v)
    assert high.dtype == np.uint16 and (high.size == 0 or (high.min() >= 1 and high.max() < HIGH_ALPHABET))
    assert len(low) == -(-v.size * 23 // 8)
    np.testing.assert_array_equal(join_float32(high, low, v.size).view(np.uint32), v.view(np.uint32))


def test_chunks_join_end_to_end():
    v = np.random.default_rng(0).standard_normal((1 << 18) * 2 + 13).astype(np.float32)
    np.testing.assert_array_equal(join_float32(*split_float32(v), v.size), v)


def test_biases_cost_fewer_bits_than_float32():
    """Trained biases span a few octaves: their signs and exponents take few distinct values."""
    v = (np.random.default_rng(1).standard_normal(300) * 0.05).astype(np.float32)
    high, _ = split_float32(v)
    assert np.unique(high).size < 30


def test_corrupt_parts_raise_format_error():
    high, low = split_float32(np.arange(5, dtype=np.float32))
    with pytest.raises(DzipFormatError, match="mantissa bytes"):
        join_float32(high, low + b"\0", 5)
    with pytest.raises(DzipFormatError, match="padding"):
        join_float32(high, low[:-1] + bytes([low[-1] | 1]), 5)
    with pytest.raises(DzipFormatError, match="outside"):
        join_float32(np.zeros(5, np.uint16), low, 5)
    with pytest.raises(DzipFormatError, match="codes for"):
        join_float32(high[:4], low, 5)
