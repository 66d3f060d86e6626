import heapq

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepzip.encode import huffman
from deepzip.encode.dtypes import symbol_dtype
from deepzip.errors import DzipFormatError

SETTINGS = settings(max_examples=50, deadline=None)


def optimal_code(counts) -> tuple[int, int]:
    """(total bits, depth) of an unrestricted Huffman code; total bits = the sum of merged weights."""
    heap = [(int(c), 0) for c in counts if c > 0]
    heapq.heapify(heap)
    total = 0
    while len(heap) > 1:
        (wa, da), (wb, db) = heapq.heappop(heap), heapq.heappop(heap)
        total += wa + wb
        heapq.heappush(heap, (wa + wb, max(da, db) + 1))
    return total, heap[0][1] if heap else 0


def optimal_cost(counts) -> int:
    return optimal_code(counts)[0]


def kraft(lengths) -> float:
    used = np.asarray(lengths)[np.asarray(lengths) > 0].astype(np.int64)
    return float(np.sum(2.0 ** -used))


def code_of(symbol: int, lengths) -> int:
    data = huffman.encode(np.array([symbol]), lengths)
    return int.from_bytes(data, "big") >> (8 * len(data) - int(lengths[symbol]))


@st.composite
def streams(draw, max_alphabet=300):
    alphabet = draw(st.integers(1, max_alphabet))
    used = draw(st.lists(st.integers(0, alphabet - 1), min_size=1, max_size=20, unique=True))
    symbols = draw(st.lists(st.sampled_from(used), max_size=400))
    return np.array(symbols, dtype=np.int64), alphabet


@SETTINGS
@given(streams(), st.integers(5, 15))
def test_round_trip_and_exact_size(stream, max_len):
    symbols, alphabet = stream
    lengths = huffman.code_lengths(np.bincount(symbols, minlength=alphabet), max_len)
    if symbols.size == 0:
        assert not lengths.any()
        lengths[0] = 1  # an empty stream needs no codes, but a table to round-trip through
    data = huffman.encode(symbols, lengths)
    assert len(data) == (int(lengths[symbols].astype(np.int64).sum()) + 7) // 8
    out = huffman.decode(data, lengths, symbols.size)
    assert out.dtype == symbol_dtype(alphabet)
    np.testing.assert_array_equal(out, symbols)


@SETTINGS
@given(st.lists(st.integers(0, 10**6), min_size=1, max_size=200))
def test_lengths_are_optimal_and_complete(counts):
    counts = np.array(counts)
    lengths = huffman.code_lengths(counts)
    assert lengths.dtype == np.uint8
    np.testing.assert_array_equal(lengths == 0, counts == 0)
    used = np.count_nonzero(counts)
    cost, depth = optimal_code(counts)
    if used >= 2 and depth <= 15:  # the limit need not bind (both trees are of least depth): optimal
        assert int((counts * lengths).sum()) == cost
    if used >= 2:
        assert kraft(lengths) == 1.0


def test_single_symbol_gets_one_bit():
    lengths = huffman.code_lengths(np.array([0, 0, 7, 0]))
    np.testing.assert_array_equal(lengths, [0, 0, 1, 0])
    symbols = np.full(13, 2)
    data = huffman.encode(symbols, lengths)
    assert data == b"\x00\x00"
    np.testing.assert_array_equal(huffman.decode(data, lengths, 13), symbols)


def test_empty_stream():
    lengths = np.array([1, 1])
    assert huffman.encode(np.array([], np.int64), lengths) == b""
    assert huffman.decode(b"", lengths, 0).size == 0
    assert huffman.decode(b"", np.zeros(3, np.uint8), 0).size == 0
    assert huffman.code_lengths(np.zeros(5, np.int64)).tolist() == [0] * 5


@pytest.mark.parametrize("max_len, overhead", [(15, 1.0001), (10, 1.005), (8, 1.04)])
def test_length_limit_on_fibonacci_counts(max_len, overhead):
    fib = [1, 1]
    while len(fib) < 40:
        fib.append(fib[-1] + fib[-2])
    counts = np.array(fib, dtype=np.int64)
    # Fibonacci counts make the deepest Huffman tree there is: n symbols, depth n - 1 (39 here).
    assert huffman.code_lengths(counts[:12]).max() == 11
    lengths = huffman.code_lengths(counts, max_len)
    assert lengths.max() == max_len
    assert kraft(lengths) <= 1.0
    assert int((counts * lengths).sum()) <= overhead * optimal_cost(counts)
    symbols = np.repeat(np.arange(40), 3)
    np.testing.assert_array_equal(huffman.decode(huffman.encode(symbols, lengths), lengths, 120), symbols)


def test_too_many_symbols_for_the_limit():
    with pytest.raises(ValueError, match="at most 8 bits"):
        huffman.code_lengths(np.ones(257, np.int64), max_len=8)
    assert huffman.code_lengths(np.ones(256, np.int64), max_len=8).tolist() == [8] * 256


def test_canonical_codes_match_deflate_example():
    # RFC 1951, section 3.2.2: lengths (3, 3, 3, 3, 3, 2, 4, 4) give these codes.
    lengths = np.array([3, 3, 3, 3, 3, 2, 4, 4])
    codes = [code_of(s, lengths) for s in range(8)]
    assert codes == [0b010, 0b011, 0b100, 0b101, 0b110, 0b00, 0b1110, 0b1111]


@SETTINGS
@given(st.lists(st.integers(0, 1000), min_size=2, max_size=64))
def test_codes_are_canonical(counts):
    lengths = huffman.code_lengths(np.array(counts))
    used = [s for s in range(len(counts)) if lengths[s]]
    codes = {s: code_of(s, lengths) for s in used}
    for length in set(lengths[used].tolist()):
        same = [codes[s] for s in used if lengths[s] == length]
        assert same == list(range(same[0], same[0] + len(same)))  # consecutive, in symbol order
    # Ordered by (length, symbol), the codes left-aligned to 15 bits strictly increase (prefix-free).
    aligned = [codes[s] << (15 - int(lengths[s])) for s in sorted(used, key=lambda s: (lengths[s], s))]
    assert aligned == sorted(set(aligned))


def test_encode_rejects_symbols_without_codes():
    lengths = np.array([1, 1, 0])
    with pytest.raises(ValueError, match="symbol 2 at index 1"):
        huffman.encode(np.array([0, 2]), lengths)
    with pytest.raises(ValueError, match="symbol 3"):
        huffman.encode(np.array([3]), lengths)
    with pytest.raises(ValueError, match="symbol -1"):
        huffman.encode(np.array([-1]), lengths)
    with pytest.raises(ValueError, match="integers"):
        huffman.encode(np.array([0.0]), lengths)


def test_decode_rejects_truncated_data():
    symbols = np.arange(64) % 5
    lengths = huffman.code_lengths(np.bincount(symbols))
    data = huffman.encode(symbols, lengths)
    with pytest.raises(DzipFormatError, match="ends before its 64 symbols"):
        huffman.decode(data[:-1], lengths, 64)
    with pytest.raises(DzipFormatError, match="after its last symbol"):
        huffman.decode(data + b"\x00", lengths, 64)


@pytest.mark.parametrize("lengths, message", [
    ([1, 1, 1], "over-full"),
    ([1, 2, 2, 3], "over-full"),
    ([0, 0], "no symbol"),
    ([16, 1], "between 0 and 15"),
    ([-1, 1], "between 0 and 15"),
    ([], "non-empty"),
    ([[1, 1]], "1-D"),
    ([1.0, 1.0], "integer"),
])
def test_decode_rejects_bad_tables(lengths, message):
    with pytest.raises(DzipFormatError, match=message):
        huffman.decode(b"\x00", np.array(lengths), 1)


def test_decode_rejects_n_beyond_the_data():
    with pytest.raises(DzipFormatError, match="cannot hold 17 symbols"):
        huffman.decode(b"\x00\x00", np.array([1, 1]), 17)
    with pytest.raises(DzipFormatError, match="cannot hold -1"):
        huffman.decode(b"\x00", np.array([1, 1]), -1)
    assert huffman.decode(b"\x00\x00", np.array([1, 1]), 16).tolist() == [0] * 16


def test_decode_rejects_unused_bit_patterns():
    # Lengths [1, 2] leave "11" unused: an incomplete code, which only a corrupt stream reaches.
    lengths = np.array([1, 2])
    assert huffman.decode(b"\x80", lengths, 2).tolist() == [1, 0]  # "10" "0"
    with pytest.raises(DzipFormatError, match="no code uses"):
        huffman.decode(b"\xc0", lengths, 1)


@SETTINGS
@given(st.binary(max_size=40), st.lists(st.integers(0, 100), min_size=1, max_size=40), st.integers(0, 400))
def test_hostile_input_fails_cleanly(data, counts, n):
    lengths = huffman.code_lengths(np.array(counts))
    lengths[-1] = lengths[-1] or 15  # sometimes an incomplete code, never an empty one
    try:
        out = huffman.decode(data, lengths, n)
    except DzipFormatError:
        return
    assert out.shape == (n,)
    assert (lengths[out] > 0).all()
    np.testing.assert_array_equal(np.frombuffer(huffman.encode(out, lengths), np.uint8)[:len(data) - 1],
                                  np.frombuffer(data, np.uint8)[:len(data) - 1])
