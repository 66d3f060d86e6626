"""libdzip decodes every file the way deepzip does, bit for bit: dense values, raw bytes, kept
positions, codes and codebooks, for each version, coder, encoding and dtype (corpus.py says
which file holds what)."""
import json
import os
import subprocess

import corpus
import dzc
import numpy as np
import pytest
from dzip_tools import split


@pytest.mark.parametrize("label", corpus.LABELS)
def test_decodes_as_deepzip_does(libdzip, files, label):
    c, why = dzc.c_read(files[label], libdzip["default"])
    py, py_why = dzc.python_read(files[label])
    assert py is not None, py_why
    assert c is not None, why
    assert dzc.assert_same(c, py, label) == len(split(files[label].read_bytes())[0]["tensors"])


def test_the_corpus_covers_the_format(files):
    """Every version, coder, encoding, layout and dtype of docs/FORMAT.md occurs in the corpus."""
    seen = set()
    for path in files.values():
        blob = path.read_bytes()
        header, _ = split(blob)
        seen.add(f"version {blob[4]}")
        seen.update(f"coder {s['coder']}" for s in header["streams"])
        seen.update("widths" for _ in [0] if "widths" in header)
        seen.update("files" for _ in [0] if header.get("files"))
        for e in header["tensors"]:
            if "alias" in e:
                seen.add("alias")
                continue
            seen.update({f"encoding {e['encoding']}", f"dtype {e['dtype']}", f"positions {e.get('positions')}"})
            seen.update(k for k in ("split", "rows", "scales") if k in e)
            if e.get("stored") == "float16":
                seen.add(f"float16 {e['encoding']}")
            if "index_bits" in e:
                seen.add(f"index_bits {e['index_bits']}")
    want = ({f"version {v}" for v in (1, 2, 3, 4, 5, 6)}
            | {f"coder {c}" for c in ("raw", "huffman", "ans", "context", "context-left")}
            | {f"encoding {e}" for e in ("raw", "shared", "sparse")} | {f"positions {p}" for p in ("dense", "sparse", "context")}
            | {f"dtype {d}" for d in ("float32", "float64", "float16", "bfloat16", "int64", "int32", "int16", "int8", "uint8",
                                      "bool")}
            | {"alias", "widths", "split", "rows", "scales", "files", "float16 raw", "float16 shared", "float16 sparse",
               "index_bits 1", "index_bits 16"})
    assert want <= seen, want - seen


@pytest.mark.parametrize("build", ["gcc", "clang"])
def test_each_compiler_decodes_the_same_bytes(libdzip, files, build):
    for label in ("fixture-v1-lenet300-ans", "context-left-v4", "resnet18-auto", "crafted-ans-huffman-edges"):
        a = subprocess.run([str(libdzip[build]), "--dump", str(files[label])], capture_output=True, check=True).stdout
        b = subprocess.run([str(libdzip["default"]), "--dump", str(files[label])], capture_output=True, check=True).stdout
        assert a == b, (build, label)


# The library allocates nothing; dzip-dump keeps its buffers until exit, which is no leak to report.
ASAN_ENV = {**os.environ, "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=0", "UBSAN_OPTIONS": "print_stacktrace=1"}


def test_under_address_and_undefined_sanitizers(libdzip, files):
    """The whole corpus through the ASan + UBSan build: same output, no report."""
    for label, path in files.items():
        if label == "crafted-rows-past-2^24":
            continue  # 17 M weights: a minute under ASan, and the plain build decodes it above
        proc = subprocess.run([str(libdzip["asan"]), "--dump", str(path)], capture_output=True, env=ASAN_ENV)
        assert proc.returncode == 0 and not proc.stderr, (label, proc.stderr.decode()[-2000:])
        plain = subprocess.run([str(libdzip["default"]), "--dump", str(path)], capture_output=True, check=True)
        assert proc.stdout == plain.stdout, label


@pytest.mark.parametrize("how", ["visit", "iter"])
def test_visitor_and_iterator_give_the_kept_list(libdzip, files, how):
    for label in ("live-huffman", "context-left-v4", "sparse-float16", "crafted-wide-alphabets", "vgg16-context"):
        buffered, _ = dzc.c_read(files[label], libdzip["default"])
        other, _ = dzc.c_read(files[label], libdzip["default"], f"--dump={how}")
        assert buffered.kept.keys() == other.kept.keys() and buffered.kept, label
        for i, (pos, vals, _) in buffered.kept.items():
            assert np.array_equal(pos, other.kept[i][0]) and np.array_equal(vals, other.kept[i][1]), (label, i)


def test_every_reported_size_is_exact(libdzip, files):
    """The arena, scratch, output and kept-list sizes the header promises: one less is refused
    with that number, the number itself works (dzip-dump --check-sizes)."""
    for label, path in files.items():
        if label == "crafted-rows-past-2^24":
            continue
        proc = subprocess.run([str(libdzip["asan"]), "--check-sizes", str(path)], capture_output=True, text=True, env=ASAN_ENV)
        assert proc.returncode == 0 and proc.stdout == "sizes exact\n", (label, proc.stderr)


def test_sizes_are_known_before_decoding(libdzip, files):
    """--sizes reports what each tensor needs; the arena is a small multiple of the header."""
    path = files["context-left-v4"]
    sizes = json.loads(subprocess.run([str(libdzip["default"]), "--sizes", str(path)], capture_output=True,
                                      check=True).stdout)
    header, _ = split(path.read_bytes())
    by_name = {t["name"]: t for t in sizes["tensors"]}
    fc1 = next(e for e in header["tensors"] if e["name"] == "fc1.weight")
    assert by_name["fc1.weight"]["dense_bytes"] == 4 * fc1["shape"][0] * fc1["shape"][1]
    assert by_name["fc1.weight"]["kept_max"] == 150 * 64  # its live submatrix: 150 rows kept of 300
    assert 0 < by_name["fc1.weight"]["scratch_bytes"] < 8192
    assert sizes["arena"] < 4 * len(json.dumps(header)) + 4096
