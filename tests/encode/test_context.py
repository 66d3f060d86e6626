import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepzip.encode import context
from deepzip.encode.dtypes import symbol_dtype
from deepzip.errors import DzipFormatError

SETTINGS = settings(max_examples=80, deadline=None)


@st.composite
def grids(draw):
    """Code matrices as pruning and sharing leave them: a density, a few codes in use, maybe
    dead rows and columns."""
    alphabet = draw(st.integers(1, 300))
    rows, cols = draw(st.integers(0, 40)), draw(st.integers(0, 40))
    density = draw(st.sampled_from([0.0, 0.02, 0.1, 0.5, 1.0]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    grid = rng.integers(1, alphabet, (rows, cols)) if alphabet > 1 else np.zeros((rows, cols), np.int64)
    grid = np.where(rng.random((rows, cols)) < density, grid, 0)
    if rows and draw(st.booleans()):
        grid[rng.random(rows) < 0.3] = 0
    return grid.astype(symbol_dtype(alphabet)), alphabet


@SETTINGS
@given(grids(), st.booleans())
def test_round_trip(case, left_codes):
    grid, alphabet = case
    data = context.encode(grid, alphabet, left_codes)
    out = context.decode(data, *grid.shape, alphabet, left_codes)
    assert out.dtype == symbol_dtype(alphabet) and out.shape == grid.shape
    np.testing.assert_array_equal(out, grid)


def _smooth_rows(rng, rows=200, cols=400):
    """Codes of a first layer over pixels: each row's weights keep one sign over runs of
    neighbouring inputs (codes 1–15 negative, 16–31 positive), half of them kept."""
    sign = np.repeat(rng.random((rows, cols // 20)) < 0.5, 20, axis=1)
    grid = np.where(sign, rng.integers(1, 16, (rows, cols)), rng.integers(16, 32, (rows, cols)))
    return np.where(rng.random((rows, cols)) < 0.5, grid, 0).astype(np.uint8)


def test_left_contexts_pay_where_neighbours_share_sign_and_cost_little_where_not():
    rng = np.random.default_rng(0)
    smooth = _smooth_rows(rng)
    assert len(context.encode(smooth, 32, True)) < 0.97 * len(context.encode(smooth, 32))
    shuffled = smooth[:, rng.permutation(smooth.shape[1])]  # unordered inputs: nothing to learn
    assert len(context.encode(shuffled, 32, True)) < 1.01 * len(context.encode(shuffled, 32))
    # decoding with the other setting than the stream was written with does not give the matrix back
    data = context.encode(smooth, 32, True)
    try:
        assert not np.array_equal(context.decode(data, *smooth.shape, 32), smooth)
    except DzipFormatError:
        pass


def test_adapts_where_a_static_table_cannot():
    """A column-structured mask (inputs nobody uses) costs far less than its order-0 entropy."""
    rng = np.random.default_rng(0)
    live = rng.random(784) < 0.3  # 30 % of the inputs carry every kept weight
    grid = np.where((rng.random((300, 784)) < 0.2) & live, rng.integers(1, 32, (300, 784)), 0).astype(np.uint8)
    p = (grid != 0).mean()
    order0_bits = grid.size * -(p * np.log2(p) + (1 - p) * np.log2(1 - p))
    codes = grid[grid != 0]
    counts = np.bincount(codes)[1:]
    q = counts[counts > 0] / codes.size
    code_bits = codes.size * -(q * np.log2(q)).sum()
    size = len(context.encode(grid, 32))
    assert size * 8 < 0.8 * order0_bits + code_bits * 1.01


def test_trailing_zero_bytes_are_dropped_and_restored():
    grid = np.zeros((50, 50), np.uint8)  # nothing kept: a handful of bytes, none of them trailing zeros
    data = context.encode(grid, 5)
    assert len(data) <= 4 and not data.endswith(b"\0")
    np.testing.assert_array_equal(context.decode(data, 50, 50, 5), grid)


def test_corrupt_streams_raise_format_error():
    rng = np.random.default_rng(1)
    grid = np.where(rng.random((20, 30)) < 0.4, rng.integers(1, 17, (20, 30)), 0).astype(np.uint8)
    data = context.encode(grid, 17)
    with pytest.raises(DzipFormatError, match="left after its last weight"):
        context.decode(data + b"\x17" * 8, 20, 30, 17)
    with pytest.raises(DzipFormatError, match="outside its alphabet|left after"):
        context.decode(data, 20, 30, 3)  # fewer codes than the stream was written with
    with pytest.raises(DzipFormatError, match="no weights"):
        context.decode(b"\x01", 0, 30, 17)
    for cut in range(len(data)):  # a stream cut short decodes to something, but only within the alphabet
        try:
            out = context.decode(data[:cut], 20, 30, 17)
        except DzipFormatError:
            continue
        assert out.max() < 17


def test_encode_refuses_what_it_cannot_code():
    with pytest.raises(ValueError, match="2-D"):
        context.encode(np.zeros(5, np.uint8), 4)
    with pytest.raises(ValueError, match="outside the alphabet"):
        context.encode(np.full((2, 2), 4, np.uint8), 4)
    with pytest.raises(ValueError, match="alphabet must be"):
        context.encode(np.zeros((2, 2), np.uint8), 0)
