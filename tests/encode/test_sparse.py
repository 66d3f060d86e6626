import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import deepzip as dz
from deepzip.encode import from_gaps, to_gaps
from deepzip.errors import DzipFormatError

SETTINGS = settings(max_examples=50, deadline=None)


def expected_fillers(flat: np.ndarray, index_bits: int) -> int:
    """sum((p_i - p_{i-1} - 1) // 2^w) with p_{-1} = -1, written as a plain loop on purpose."""
    total, previous = 0, -1
    for p in range(len(flat)):
        if flat[p] != 0:
            total += (p - previous - 1) // 2**index_bits
            previous = p
    return total


# Mostly zeros, with runs long enough to need fillers at small widths.
sparse_ints = hnp.arrays(np.int32, st.integers(0, 600),
                         elements=st.one_of(st.just(0), st.just(0), st.just(0), st.integers(-9, 9)))
sparse_floats = hnp.arrays(np.float32, st.integers(0, 600),
                           elements=st.one_of(st.just(0.0), st.just(0.0), st.floats(-1, 1, width=32)))


@SETTINGS
@given(st.one_of(sparse_ints, sparse_floats), st.integers(1, 9))
def test_round_trip_and_fillers(flat, index_bits):
    gaps, values = to_gaps(flat, index_bits)
    width = 2**index_bits
    assert gaps.dtype == (np.uint8 if index_bits <= 8 else np.uint16)
    assert values.dtype == flat.dtype
    assert len(gaps) == len(values)
    assert gaps.size == 0 or int(gaps.max()) <= width - 1
    fillers = expected_fillers(flat, index_bits)
    assert len(gaps) == np.count_nonzero(flat) + fillers
    assert np.count_nonzero(values == 0) == fillers
    assert (gaps[values == 0] == width - 1).all()
    out = from_gaps(gaps, values, flat.size)
    assert out.dtype == flat.dtype
    np.testing.assert_array_equal(out, flat)


def test_worked_example():
    flat = np.zeros(30)
    flat[[0, 3, 20]] = [1.5, -2.0, 3.0]
    gaps, values = to_gaps(flat, 3)
    # 0: first entry at position 0. 3: skips 2. 20: skips 16 = two fillers of 8 positions each
    # (at 11 and 19), then a gap of 0. Positions 21..29 are trailing zeros and not stored.
    assert gaps.tolist() == [0, 2, 7, 7, 0]
    assert values.tolist() == [1.5, -2.0, 0.0, 0.0, 3.0]
    np.testing.assert_array_equal(from_gaps(gaps, values, 30), flat)


@pytest.mark.parametrize("skipped, gaps", [(7, [0, 7]), (8, [0, 7, 0]), (15, [0, 7, 7]), (16, [0, 7, 7, 0])])
def test_fillers_start_exactly_past_the_width(skipped, gaps):
    flat = np.zeros(skipped + 2, np.int64)
    flat[[0, skipped + 1]] = 5
    got, values = to_gaps(flat, 3)
    assert got.tolist() == gaps
    assert values.tolist() == [5] + [0] * (len(gaps) - 2) + [5]
    np.testing.assert_array_equal(from_gaps(got, values, flat.size), flat)


def test_all_zero_and_empty():
    for flat in (np.zeros(100), np.zeros(0)):
        gaps, values = to_gaps(flat, 5)
        assert gaps.size == values.size == 0
        np.testing.assert_array_equal(from_gaps(gaps, values, flat.size), flat)


def test_gap_dtypes():
    assert to_gaps(np.ones(3), 8)[0].dtype == np.uint8
    assert to_gaps(np.ones(3), 9)[0].dtype == np.uint16
    assert to_gaps(np.ones(3), 16)[0].dtype == np.uint16
    with pytest.raises(dz.ConfigError, match="from 1 to 16"):  # the format's limit (deepzip/limits.py)
        to_gaps(np.ones(3), 17)


def test_to_gaps_rejects_bad_arguments():
    with pytest.raises(ValueError, match="1-D"):
        to_gaps(np.ones((2, 2)), 5)
    with pytest.raises(ValueError, match="index_bits"):
        to_gaps(np.ones(3), 0)


@pytest.mark.parametrize("gaps, values, numel, message", [
    ([0, -1], [1, 2], 10, "does not fit"),
    ([10], [1], 10, "does not fit"),
    ([5, 5], [1, 2], 10, "past its 10 elements"),
    ([0, 0], [1], 10, "2 gaps but 1 values"),
    ([0.0], [1], 10, "not integers"),
    ([0], [1], -1, "cannot have -1"),
])
def test_from_gaps_rejects_bad_entries(gaps, values, numel, message):
    with pytest.raises(DzipFormatError, match=message):
        from_gaps(np.array(gaps), np.array(values), numel)


def test_from_gaps_accepts_a_full_tensor():
    np.testing.assert_array_equal(from_gaps(np.array([4, 4]), np.array([1, 2]), 10), [0] * 4 + [1] + [0] * 4 + [2])
