import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepzip.encode import ans
from deepzip.encode.dtypes import symbol_dtype
from deepzip.errors import DzipFormatError

SETTINGS = settings(max_examples=50, deadline=None)


def entropy_bits(symbols: np.ndarray) -> float:
    counts = np.bincount(symbols)
    p = counts[counts > 0] / symbols.size
    return float(-(p * np.log2(p)).sum() * symbols.size)


@st.composite
def streams(draw):
    alphabet = draw(st.integers(1, 300))
    used = draw(st.lists(st.integers(0, alphabet - 1), min_size=1, max_size=20, unique=True))
    symbols = np.array(draw(st.lists(st.sampled_from(used), max_size=400)), dtype=np.int64)
    return symbols, alphabet


@SETTINGS
@given(streams())
def test_round_trip(stream):
    symbols, alphabet = stream
    counts = np.bincount(symbols, minlength=alphabet)
    data = ans.encode(symbols, counts)
    assert len(data) % 4 == 0
    out = ans.decode(data, counts, symbols.size)
    assert out.dtype == symbol_dtype(alphabet)
    np.testing.assert_array_equal(out, symbols)


def test_empty_and_single_symbol_streams():
    assert ans.encode(np.array([], np.int64), np.zeros(4, np.int64)) == b""
    assert ans.decode(b"", np.zeros(4, np.int64), 0).size == 0
    for alphabet in (1, 2, 32):
        counts = np.zeros(alphabet, np.int64)
        counts[-1] = 1000
        symbols = np.full(1000, alphabet - 1)
        data = ans.encode(symbols, counts)
        assert len(data) <= 4  # a certain symbol costs (almost) nothing
        np.testing.assert_array_equal(ans.decode(data, counts, 1000), symbols)


@pytest.mark.parametrize("n", [10_000, 200_000])
@pytest.mark.parametrize("shape", ["geometric", "skewed", "uniform"])
def test_within_half_a_percent_of_entropy(shape, n):
    rng = np.random.default_rng(n)
    symbols = {
        "geometric": lambda: np.minimum(rng.geometric(0.35, n) - 1, 31),
        "skewed": lambda: np.minimum(rng.geometric(0.75, n) - 1, 31),  # ~1.1 bits/symbol
        "uniform": lambda: rng.integers(0, 32, n),
    }[shape]()
    counts = np.bincount(symbols, minlength=32)
    data = ans.encode(symbols, counts)
    bits = 8 * len(data)
    assert entropy_bits(symbols) <= bits <= 1.005 * entropy_bits(symbols)


def test_encode_rejects_bad_symbols():
    counts = np.array([3, 0, 2])
    with pytest.raises(ValueError, match="zero count"):
        ans.encode(np.array([0, 1]), counts)
    with pytest.raises(ValueError, match="outside the 3-symbol alphabet"):
        ans.encode(np.array([3]), counts)
    with pytest.raises(ValueError, match="outside"):
        ans.encode(np.array([-1]), counts)


@pytest.mark.parametrize("counts, message", [
    ([-1, 2], "negative"),
    ([0, 0], "no symbol"),
    ([0.5, 0.5], "integer counts"),
    ([], "non-empty"),
])
def test_decode_rejects_bad_tables(counts, message):
    with pytest.raises(DzipFormatError, match=message):
        ans.decode(b"\x01\x00\x00\x00", np.array(counts), 1)


def test_decode_rejects_malformed_data():
    counts = np.array([5, 3, 2])
    symbols = np.array([0, 1, 2, 0, 0, 1, 0, 2, 1, 0] * 50)
    data = ans.encode(symbols, counts * 50)
    with pytest.raises(DzipFormatError, match="whole 32-bit words"):
        ans.decode(data[:-1], counts, 500)
    with pytest.raises(DzipFormatError, match="corrupt"):  # constriction: never ends in a zero word
        ans.decode(data + b"\x00\x00\x00\x00", counts, 500)
    with pytest.raises(DzipFormatError, match="left after its last symbol"):
        ans.decode(data, counts, 490)
    with pytest.raises(DzipFormatError, match="0 symbols has 4 bytes"):
        ans.decode(b"\x01\x00\x00\x00", counts, 0)
    with pytest.raises(DzipFormatError, match="cannot hold -1"):
        ans.decode(b"", counts, -1)


def test_decode_rejects_zero_count_symbols():
    # Symbol 1 is coded, then the table claims it never occurs: the decoder must notice.
    data = ans.encode(np.array([1] * 20 + [0] * 20), np.array([1, 1]))
    with pytest.raises(DzipFormatError):
        ans.decode(data, np.array([1, 0]), 40)


@SETTINGS
@given(st.binary(max_size=64).filter(lambda b: len(b) % 4 == 0),
       st.lists(st.integers(0, 50), min_size=1, max_size=20).filter(any), st.integers(0, 300))
def test_hostile_input_fails_cleanly(data, counts, n):
    counts = np.array(counts)
    try:
        out = ans.decode(data, counts, n)
    except DzipFormatError:
        return
    assert out.shape == (n,)
    assert (counts[out] > 0).all()
    assert ans.encode(out, counts) == data  # what decodes cleanly is exactly what encode writes
