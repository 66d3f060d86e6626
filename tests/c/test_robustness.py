"""Mutants of valid files: libdzip refuses exactly the files deepzip refuses (DzipFormatError),
and where both accept one, they decode it to the same bits."""
import zlib
from collections import Counter

import dzc
import pytest
from mutants import mutants

BASES = ["context-left-v4", "fixture-v1-lenet300-ans", "v2-widths", "live-huffman", "tied-and-dtypes",
         "crafted-empty-scalar-names", "crafted-ans-huffman-edges", "crafted-wide-alphabets", "sparse-float16",
         "carried-files"]
PER_BASE = 50


@pytest.mark.parametrize("label", BASES)
def test_mutants_get_the_python_readers_verdict(libdzip, files, tmp_path, label):
    blob = files[label].read_bytes()
    verdicts = Counter()
    for k, (how, mutant) in enumerate(mutants(blob, zlib.crc32(label.encode()), PER_BASE)):
        path = tmp_path / f"{k}.dzip"
        path.write_bytes(mutant)
        c, c_why = dzc.c_read(path, libdzip["default"])
        py, py_why = dzc.python_read(path)
        assert (c is None) == (py is None), f"{label} mutant {k} ({how}): C says {c_why or 'valid'}, Python {py_why or 'valid'}"
        if c is not None:
            dzc.assert_same(c, py, f"{label} mutant {k} ({how})")
        verdicts["refused" if c is None else "accepted"] += 1
    # both verdicts occur, so the comparison can fail either way
    assert verdicts["refused"] >= PER_BASE // 3 and verdicts["accepted"] >= 1, verdicts


def _texts(rng):
    """JSON-ish texts near the edges of the grammar Python's json accepts: escapes, surrogates,
    numbers, literals, whitespace, nesting, invalid UTF-8."""
    def value(depth):
        kind = rng.randrange(9 if depth < 5 else 6)
        if kind == 0:
            return rng.choice(["0", "-0", "01", "1.", ".5", "-", "1e", "1E+5", "2e-3", "-12.5e+07", "1e400", "1" * 4300,
                               "1" * 4301, "-" + "2" * 4300, "9" * 30 + ".5", "0x1", "+1", "1.5e", "00"])
        if kind == 1:
            return rng.choice(["true", "false", "null", "NaN", "Infinity", "-Infinity", "nul", "True", "tru e"])
        if kind in (2, 3, 4, 5):
            parts = [rng.choice(["a", "é", "\\u00e9", "\\ud800", "\\udc00", "\\ud83d\\ude00", "\\ud83d", "\\uD83D\\uDE00",
                                 "\\u12", "\\uzzzz", "\\x41", "\\/", "\\\\", '\\"', "\\b\\f\\n\\r\\t", "\t", "\x01", "\x7f",
                                 "\\u0000", " ", "\x1f"]) for _ in range(rng.randrange(4))]
            return '"' + "".join(parts) + rng.choice(['"', '"', '"', ""])
        items = [value(depth + 1) for _ in range(rng.randrange(4))]
        ws = rng.choice(["", " ", "\n\t", "\r\n ", "\x0c", "\u00a0"])
        if kind == 6:
            return "[" + ws + ("," + ws).join(items) + rng.choice(["]", "]", ",]", ""])
        keys = [rng.choice(['"k"', '"k"', '"\\u006b"', "k", '"a\\u0000"', "1"]) for _ in items]
        return "{" + ",".join(f"{k}{ws}:{ws}{v}" for k, v in zip(keys, items)) + rng.choice(["}", "}", ",}", "]"])
    text = value(0).encode("utf-8", "surrogatepass")
    if rng.random() < 0.1:  # a byte that is not UTF-8, or a UTF-8 encoded surrogate
        i = rng.randrange(len(text) + 1)
        text = text[:i] + rng.choice([b"\xff", b"\xc0\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82"]) + text[i:]
    return text


def test_json_texts_get_the_verdict_of_pythons_json(libdzip, files, tmp_path):
    """A valid file whose "meta" is replaced by texts at the grammar's edges: the header parser
    accepts exactly what json.loads accepts (meta is read by neither reader, only parsed)."""
    import json
    import random

    from dzip_tools import join, split

    header, payload = split(files["tied-and-dtypes"].read_bytes())
    for s in header["streams"]:
        del s["offset"]
    header["meta"] = "@"
    prefix, suffix = json.dumps(header).encode().split(b'"@"')
    rng = random.Random(11)
    verdicts = Counter()
    for k in range(300):
        path = tmp_path / f"{k}.dzip"
        text = _texts(rng)
        path.write_bytes(join({}, payload, version=3, header_bytes=zlib.compress(prefix + text + suffix)))
        c, c_why = dzc.c_read(path, libdzip["default"])
        py, py_why = dzc.python_read(path)
        assert (c is None) == (py is None), f"meta {text[:200]!r}: C says {c_why or 'valid'}, Python {py_why or 'valid'}"
        verdicts[c is None] += 1
    assert verdicts[True] > 50 and verdicts[False] > 50, verdicts


def test_base64_tables_of_version_1_get_pythons_verdict(libdzip, files, tmp_path):
    """Version 1 code tables are base64 in the header: padding, escapes and stray characters
    are judged as base64.b64decode(validate=True) judges them."""
    import json
    import random

    from dzip_tools import join, split

    header, payload = split(files["fixture-v1-lenet300-ans"].read_bytes())
    coded = [s for s in header["streams"] if "table" in s]
    rng = random.Random(5)
    verdicts = Counter()
    for k in range(120):
        s = rng.choice(coded)
        old = s["table"]
        pad = "=" * (len(old) - len(old.rstrip("=")))
        text = old.rstrip("=") + rng.choice([pad, pad, pad, "", "=", "==", "===", "=A", "A", "AA=", " ", "\n"])
        if rng.random() < 0.3:
            i = rng.randrange(len(text))
            text = text[:i] + rng.choice(["-", "_", "=", "*", "é", "Q"]) + text[i + 1:]
        escaped = json.dumps(text)
        if rng.random() < 0.3:
            escaped = escaped.replace("A", "\\u0041")
        blob = json.dumps(header).replace(json.dumps(old), escaped, 1).encode()
        path = tmp_path / f"{k}.dzip"
        path.write_bytes(join({}, payload, version=1, header_bytes=zlib.compress(blob)))
        c, c_why = dzc.c_read(path, libdzip["default"])
        py, py_why = dzc.python_read(path)
        assert (c is None) == (py is None), f"table {text!r}: C says {c_why or 'valid'}, Python {py_why or 'valid'}"
        if c is not None:
            dzc.assert_same(c, py, f"table {text!r}")
        verdicts[c is None] += 1
    assert verdicts[True] > 10 and verdicts[False] > 10, verdicts


def _hand_made():
    """Headers no writer makes and random edits rarely reach: (label, header text, payload)."""
    import json

    import numpy as np

    from deepzip.dzip.container import leb128
    from deepzip.encode import ans

    one = np.ones(2, "<f4").tobytes()
    big = 2 ** 47
    cases = {
        "empty file": ({"streams": [], "tensors": []}, b""),
        "zero rows, huge columns, empty live bitmaps": (
            {"streams": [{"coder": "raw", "length": 8}, {"coder": "raw", "length": 0}, {"coder": "raw", "length": 0},
                         {"coder": "context", "length": 0}],
             "tensors": [{"name": "w", "shape": [0, big, big], "dtype": "float32", "encoding": "shared", "codebook": 0,
                          "rows": 1, "cols": 2, "positions": "context", "values": 3}]}, one),
        "live rows of a tensor without columns": (
            {"streams": [{"coder": "raw", "length": 8}, {"coder": "raw", "length": 1}, {"coder": "raw", "length": 0},
                         {"coder": "context", "length": 0}],
             "tensors": [{"name": "w", "shape": [5, 0], "dtype": "float32", "encoding": "shared", "codebook": 0,
                          "rows": 1, "cols": 2, "positions": "context", "values": 3}]}, one + b"\xa0"),
        "an unread field names a stream of unknown coder": (
            {"streams": [{"coder": "raw", "length": 8}, {"coder": "lz4", "length": 3}],
             "tensors": [{"name": "b", "shape": [2], "dtype": "float32", "encoding": "raw", "data": 0, "gaps": 1}]},
            one + b"abc"),
        "a right crc32 on a version 3 stream, as a float": (
            {"streams": [{"coder": "raw", "length": 8, "crc32": float(zlib.crc32(one))}],
             "tensors": [{"name": "b", "shape": [2], "dtype": "float32", "encoding": "raw", "data": 0}]}, one),
        "a wrong crc32 on a version 3 stream": (
            {"streams": [{"coder": "raw", "length": 8, "crc32": zlib.crc32(one) ^ 1}],
             "tensors": [{"name": "b", "shape": [2], "dtype": "float32", "encoding": "raw", "data": 0}]}, one),
        "escaped keys, null nonzero, an alias of an alias": (
            '{"streams": [{"coder": "raw", "length": 8}], "tensors": [{"\\u006eame": "b", "shape": [2], '
            '"dtype": "float32", "encoding": "raw", "data": 0, "nonzero": null}, {"name": "c", "alias": "b"}, '
            '{"name": "d", "alias": "c"}]}', one),
        "a Huffman length of 16": (
            {"streams": [{"coder": "raw", "length": 8}, {"coder": "huffman", "length": 4, "count": 1, "alphabet": 3}],
             "tensors": [{"name": "w", "shape": [1], "dtype": "float32", "encoding": "shared", "codebook": 0,
                          "positions": "dense", "values": 1}]}, one + bytes([16, 1, 0, 0])),
        "index_bits 17": (
            {"streams": [{"coder": "raw", "length": 4}, {"coder": "raw", "length": 0}],
             "tensors": [{"name": "w", "shape": [1], "dtype": "float32", "encoding": "sparse", "index_bits": 17,
                          "gaps": 1, "values": 0}]}, one[:4]),
    }
    counts = np.array([2 ** 63 - 1, 2 ** 62, 1, 3])
    data = leb128(counts) + ans.encode(np.array([0, 1, 1, 0, 3, 2]), counts)
    cases["ANS counts near 2^63"] = (
        {"streams": [{"coder": "raw", "length": 12}, {"coder": "ans", "length": len(data), "count": 6, "alphabet": 4}],
         "tensors": [{"name": "w", "shape": [6], "dtype": "float32", "encoding": "shared", "codebook": 0,
                      "positions": "dense", "values": 1}]}, np.ones(3, "<f4").tobytes() + data)
    for label, (header, payload) in cases.items():
        text = header if isinstance(header, str) else json.dumps(header)
        yield label, text.encode(), payload


def test_hand_made_headers_get_pythons_verdict(libdzip, tmp_path):
    import subprocess

    from dzip_tools import join
    from test_conformance import ASAN_ENV  # noqa: F401 (the same sanitizer settings)

    verdicts = {}
    for k, (label, text, payload) in enumerate(_hand_made()):
        path = tmp_path / f"{k}.dzip"
        path.write_bytes(join({}, payload, version=3, header_bytes=zlib.compress(text)))
        c, c_why = dzc.c_read(path, libdzip["default"])
        py, py_why = dzc.python_read(path)
        assert (c is None) == (py is None), f"{label}: C says {c_why or 'valid'}, Python {py_why or 'valid'}"
        if c is not None:
            dzc.assert_same(c, py, label)
        asan = subprocess.run([str(libdzip["asan"]), "--dump", str(path)], capture_output=True, env=ASAN_ENV)
        assert asan.returncode == (0 if c else 1) and b"Sanitizer" not in asan.stderr, (label, asan.stderr[-1500:])
        verdicts[label] = c is not None
    assert verdicts == {"empty file": True, "zero rows, huge columns, empty live bitmaps": False,
                        "live rows of a tensor without columns": True,
                        "an unread field names a stream of unknown coder": True,
                        "a right crc32 on a version 3 stream, as a float": True,
                        "a wrong crc32 on a version 3 stream": False,
                        "escaped keys, null nonzero, an alias of an alias": True, "a Huffman length of 16": False,
                        "index_bits 17": False, "ANS counts near 2^63": True}
