import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepzip.encode import CODERS, decode_stream, encode_stream, table_bytes
from deepzip.encode.dtypes import symbol_dtype
from deepzip.errors import DzipFormatError

SETTINGS = settings(max_examples=50, deadline=None)


def cost(data: bytes, meta: dict) -> int:
    return len(data) + table_bytes(meta["table"])


@st.composite
def streams(draw):
    alphabet = draw(st.integers(1, 260))
    used = draw(st.lists(st.integers(0, alphabet - 1), min_size=1, max_size=12, unique=True))
    weights = draw(st.lists(st.integers(1, 50), min_size=len(used), max_size=len(used)))
    symbols = draw(st.lists(st.sampled_from(sum(([u] * w for u, w in zip(used, weights)), [])), max_size=500))
    return np.array(symbols, dtype=np.int64), alphabet


@SETTINGS
@given(streams(), st.sampled_from(CODERS + ("auto",)))
def test_round_trip_through_json(stream, coder):
    symbols, alphabet = stream
    data, meta = encode_stream(symbols, alphabet, coder)
    meta = json.loads(json.dumps(meta))
    assert set(meta) == {"coder", "count", "alphabet", "table"}
    assert meta["coder"] in CODERS and coder in ("auto", meta["coder"])
    assert meta["count"] == symbols.size and meta["alphabet"] == alphabet and len(meta["table"]) == alphabet
    out = decode_stream(data, {**meta, "offset": 0, "crc32": 1})  # the container adds its own keys
    assert out.dtype == symbol_dtype(alphabet)
    np.testing.assert_array_equal(out, symbols)


@SETTINGS
@given(streams())
def test_auto_is_never_larger_than_either_coder(stream):
    symbols, alphabet = stream
    auto = cost(*encode_stream(symbols, alphabet, "auto"))
    assert auto == min(cost(*encode_stream(symbols, alphabet, c)) for c in CODERS)


def test_auto_picks_ans_on_a_skewed_stream_and_huffman_on_a_dyadic_one():
    rng = np.random.default_rng(0)
    skewed = (rng.random(20_000) < 0.05).astype(np.int64)  # H = 0.29 bits; Huffman must spend 1
    data, meta = encode_stream(skewed, 2, "auto")
    assert meta["coder"] == "ans" and len(data) < 20_000 / 8 * 0.35
    dyadic = rng.integers(0, 4, 1000)  # 2 bits each, exactly what Huffman spends
    data, meta = encode_stream(dyadic, 4, "auto")
    assert meta["coder"] == "huffman" and len(data) == 250 and meta["table"] == [2, 2, 2, 2]


@pytest.mark.parametrize("coder", CODERS + ("auto",))
def test_empty_stream(coder):
    data, meta = encode_stream(np.array([], np.int64), 7, coder)
    assert data == b""
    assert meta["count"] == 0 and meta["table"] == [0] * 7
    assert decode_stream(data, meta).size == 0


def test_table_bytes_counts_leb128_varints():
    assert table_bytes([0, 1, 127, 128, 16383, 16384]) == 1 + 1 + 1 + 2 + 2 + 3


def test_encode_stream_rejects_bad_arguments():
    with pytest.raises(ValueError, match="coder must be"):
        encode_stream(np.array([0]), 2, "zstd")
    with pytest.raises(ValueError, match="alphabet 0..1"):
        encode_stream(np.array([2]), 2, "huffman")
    with pytest.raises(ValueError, match="alphabet must be"):
        encode_stream(np.array([0]), 0, "huffman")


GOOD = {"coder": "huffman", "count": 2, "alphabet": 2, "table": [1, 1]}


@pytest.mark.parametrize("change, message", [
    ({"coder": "zstd"}, "unknown coder"),
    ({"coder": ["huffman"]}, "unknown coder"),
    ({"alphabet": 0}, "alphabet size"),
    ({"alphabet": True}, "alphabet size"),
    ({"alphabet": 65537}, "alphabet size"),
    ({"alphabet": "2"}, "alphabet size"),
    ({"count": -1}, "symbol count"),
    ({"count": 2.0}, "symbol count"),
    ({"count": None}, "symbol count"),
    ({"table": [1]}, "list of 2"),
    ({"table": [1, -1]}, "list of 2"),
    ({"table": [1, True]}, "list of 2"),
    ({"table": [1, 2**63]}, "list of 2"),
    ({"table": "AQE="}, "list of 2"),
    ({"table": [1, 1, 1], "alphabet": 3}, "over-full"),
    ({"count": 17}, "cannot hold 17"),
])
def test_decode_stream_rejects_bad_meta(change, message):
    assert decode_stream(b"\x40", GOOD).tolist() == [0, 1]
    with pytest.raises(DzipFormatError, match=message):
        decode_stream(b"\x40", {**GOOD, **change})


def test_decode_stream_rejects_a_meta_that_is_not_a_dict():
    with pytest.raises(DzipFormatError, match="not a JSON object"):
        decode_stream(b"", [GOOD])
