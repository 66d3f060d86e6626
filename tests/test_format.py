"""A .dzip reader that trusts nothing: each rule has a case, and a fuzzer hunts for the rest."""
import copy
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from dzip_tools import join, split
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import deepzip as dz


@pytest.fixture(scope="module")
def valid(tmp_path_factory):
    torch.manual_seed(0)
    model = dz.create_model("lenet300", image_size=8, classes=4)
    with torch.no_grad():  # neighbouring inputs share sign, so fc1's codes take left contexts
        w = model.fc1.weight
        w.copy_(w.abs() * torch.where((torch.arange(w.shape[1]) // 8 + torch.arange(w.shape[0])[:, None]) % 2 == 0, 1, -1))
    dz.prune_units_(model, {"fc1": 0.5})  # dead rows: fc1 is stored as its live submatrix
    dz.prune_(model, sparsity={"fc1": 0.9, "fc2": 0.5})
    dz.share_weights_(model, bits={"fc1": 4})
    dz.round_(model, names=("weight_centroids",))  # a float16 codebook
    path = tmp_path_factory.mktemp("v") / "m.dzip"
    header = dz.save(model, path, coder="context")  # shared layers context coded, the rest ANS
    assert "rows" in _entry(header, "fc1.weight") and _entry(header, "fc1.weight")["stored"] == "float16"
    coders = {s["coder"] for s in header["streams"]}  # every kind of stream is fuzzed below
    assert coders == {"context", "context-left", "ans", "raw"}, coders
    assert _entry(header, "fc2.bias").get("split") == "float32"  # signs and exponents context coded
    assert header["streams"][_entry(header, "fc1.weight")["values"]]["coder"] == "context-left"
    assert path.read_bytes()[4:6] == b"\x04\x00"  # a context-left stream makes it a version 4 file
    weights = {k: v.clone() for k, v in dz.load(path).state_dict().items()}
    return Valid(path.read_bytes(), weights)


class Valid(tuple):
    """(file bytes, weights), with a repr short enough for hypothesis' failure reports."""

    def __new__(cls, blob, weights):
        return super().__new__(cls, (blob, weights))

    def __repr__(self):
        return f"<valid .dzip, {len(self[0])} bytes>"


def _load(tmp_path, blob):
    p = tmp_path / "bad.dzip"
    p.write_bytes(blob)
    return dz.load(p)


def _decode_all(tmp_path, blob):
    """Decode every tensor with no model to fill: reaches the decoder's own checks even where a
    changed shape would first be refused as not fitting the model."""
    from deepzip.dzip import DzipReader, TensorDecoder

    p = tmp_path / "bad.dzip"
    p.write_bytes(blob)
    with DzipReader(p) as r:
        dec = TensorDecoder(r)
        for i, e in enumerate(r.header["tensors"]):
            dec.decode(e, i).dense()


def _entry(header, name):
    return next(e for e in header["tensors"] if e.get("name") == name)


def _mutate(blob, change):
    header, payload = split(blob)
    header = copy.deepcopy(header)
    payload = change(header, payload) or payload
    return join(header, payload)


CASES = {
    "short": (lambda b: b[:10], "only 10 bytes"),
    "magic": (lambda b: b"ZIPD" + b[4:], "not a .dzip"),
    "version": (lambda b: join(*split(b), version=99), "version 99"),
    "header_len": (lambda b: join(*split(b), header_len=2**40), "header claims"),
    "flags": (lambda b: join(*split(b), flags=6), "flags"),
    "crc": (lambda b: b[:-30] + bytes([b[-30] ^ 1]) + b[-29:], "checksum"),
    "truncated": (lambda b: b[:-100], "checksum|truncated"),
    "not_json": (lambda b: join({}, b"", header_bytes=__import__("zlib").compress(b"{nope")), "corrupt header"),
    "no_inflate": (lambda b: join({}, b"", header_bytes=b"\x00garbage"), "inflate"),
    "stream_outside": (lambda b: _mutate(b, lambda h, p: h["streams"][1].update(length=10**9)), "ends at byte"),
    "stream_length": (lambda b: _mutate(b, lambda h, p: h["streams"][1].update(length=-1)), "valid length"),
    "payload_cover": (lambda b: _mutate(b, lambda h, p: p + b"\0"), "cover"),
    "table_varints": (lambda b: _mutate(b, lambda h, p: _fill_stream(h, p, _coded(h), b"\x80")), "table|too large|ends"),
    "context_left_over": (lambda b: _mutate(b, lambda h, p: _grow_stream(h, p, _context(h), b"\x5a" * 9)), "left after"),
    "split_kind": (lambda b: _mutate(b, lambda h, p: _entry(h, "fc2.bias").update(split="float64")), "cannot be split"),
    "split_mantissas": (lambda b: _mutate(b, lambda h, p: _grow_stream(h, p, _entry(h, "fc2.bias")["low"], b"\0")), "mantissa bytes"),  # noqa: E501 (a table)
    "left_in_version_3": (lambda b: join(*split(b), version=3), "'context-left', which a version 3"),
    "context_coder": (lambda b: _mutate(b, lambda h, p: h["streams"][_context(h)].update(coder="ans")), "coder 'ans' where"),
    "coder": (lambda b: _mutate(b, lambda h, p: h["streams"][_entry(h, "fc1.weight")["values"]].update(coder="lz4")), "coder 'lz4'"),  # noqa: E501 (a table)
    "encoding": (lambda b: _mutate(b, lambda h, p: _entry(h, "fc1.bias").update(encoding="jpeg")), "unknown encoding"),
    "dtype": (lambda b: _mutate(b, lambda h, p: _entry(h, "fc1.bias").update(dtype="object")), "unknown dtype"),
    "negative_dim": (lambda b: _mutate(b, lambda h, p: _entry(h, "fc1.bias").update(shape=[-300])), "invalid shape"),
    "too_many_dims": (lambda b: _mutate(b, lambda h, p: _entry(h, "fc1.bias").update(shape=[1] * 9)), "invalid shape"),
    "huge_dim": (lambda b: _mutate(b, lambda h, p: _entry(h, "fc1.bias").update(shape=[0, 2**63])), "invalid shape"),
    "nan_in_header": (lambda b: _mutate(b, lambda h, p: h["meta"].update(accuracy=float("nan"))), "corrupt header"),
    "huge_shape": (lambda b: _mutate(b, lambda h, p: _entry(h, "fc1.weight").update(shape=[2**40, 2**40])), "more elements"),
    "raw_length": (lambda b: _mutate(b, lambda h, p: _entry(h, "fc3.bias").update(shape=[5])), "bytes for 5"),
    "split_length": (lambda b: _mutate(b, lambda h, p: _entry(h, "fc2.bias").update(shape=[101])), "fc2.bias"),
    "gaps_past_end": (lambda b: _mutate(b, lambda h, p: _entry(h, "fc2.weight").update(shape=[3, 64])), "gaps|run past|past its|codes for"),  # noqa: E501 (a table)
    "stream_twice": (lambda b: _mutate(b, lambda h, p: _entry(h, "fc3.bias").update(data=_entry(h, "fc2.bias")["low"])), "exactly once"),  # noqa: E501 (a table)
    "alias": (lambda b: _mutate(b, lambda h, p: h["tensors"].__setitem__(-1, {"name": "fc3.bias", "alias": "nope"})), "aliases|exactly once"),  # noqa: E501 (a table)
    "count": (lambda b: _mutate(b, lambda h, p: h["streams"][_coded(h)].update(count=10**12)), "more elements|count|symbols"),
    "alphabet": (lambda b: _mutate(b, lambda h, p: h["streams"][_coded(h)].update(alphabet=3)), "alphabet"),
    "live_on_a_vector": (lambda b: _mutate(b, lambda h, p: _swap_live(h)), "dimensions|live"),
    "live_length": (lambda b: _mutate(b, lambda h, p: _entry(h, "fc1.weight").update(shape=[600, 32])), "bitmap|fit"),
    "live_padding": (lambda b: _set_padding_bit(b), "padding|past its end"),
    "codebook_stored": (lambda b: _mutate(b, lambda h, p: _entry(h, "fc1.weight").update(stored="float8")), "cannot be stored"),
    "codebook_as_float32": (lambda b: _mutate(b, lambda h, p: _entry(h, "fc1.weight").pop("stored") and None), "codebook|alphabet|left after"),  # noqa: E501 (a table)
    "tensors_type": (lambda b: _mutate(b, lambda h, p: h.update(tensors={})), "not a list"),
    "arch": (lambda b: _mutate(b, lambda h, p: h.update(arch=[1])), "architecture"),
}


def _coded(h):
    """Index of a Huffman or ANS stream (its code table leads its bytes)."""
    return next(i for i, s in enumerate(h["streams"]) if s["coder"] in ("huffman", "ans"))


def _context(h):
    return next(i for i, s in enumerate(h["streams"]) if s["coder"] == "context")


def _fill_stream(h, payload, index, byte):
    s = h["streams"][index]
    return payload[:s["offset"]] + byte * s["length"] + payload[s["offset"] + s["length"]:]


def _grow_stream(h, payload, index, extra):
    s = h["streams"][index]
    end = s["offset"] + s["length"]
    s["length"] += len(extra)
    return payload[:end] + extra + payload[end:]


def _swap_live(h):
    """Move fc1.weight's live bitmaps onto its bias (a vector), decoded first."""
    w, b = _entry(h, "fc1.weight"), _entry(h, "fc1.bias")
    b["rows"], b["cols"] = w.pop("rows"), w.pop("cols")
    h["tensors"].remove(b)
    h["tensors"].insert(0, b)


def _set_padding_bit(blob):
    """Set a padding bit of fc1.weight's row bitmap (300 rows: 4 spare bits), file crc fixed."""
    header, payload = split(blob)
    s = header["streams"][_entry(header, "fc1.weight")["rows"]]
    last = s["offset"] + s["length"] - 1
    payload = payload[:last] + bytes([payload[last] | 1]) + payload[last + 1:]
    return join(header, payload)


DECODER_CASES = {"huge_shape", "raw_length", "split_length", "gaps_past_end", "live_length"}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_validation_rule_gives_one_sentence(tmp_path, valid, case):
    make, words = CASES[case]
    with pytest.raises(dz.DzipFormatError, match=words) as err:
        (_decode_all if case in DECODER_CASES else _load)(tmp_path, make(valid[0]))
    msg = str(err.value)
    assert "\n" not in msg and msg.endswith(".")


def _extremes():
    return st.sampled_from([0, -1, 1, 2**31, 2**63, 2**64 + 1, 1e308, -0.5, "", "x" * 300, None, True, [], {}, [2**40]])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_headers_load_exactly_or_raise_format_error(tmp_path, valid, data):
    blob, weights = valid
    header, payload = split(blob)
    header = copy.deepcopy(header)
    target = data.draw(st.sampled_from(["stream", "tensor"]))
    items = header["streams"] if target == "stream" else header["tensors"]
    item = items[data.draw(st.integers(0, len(items) - 1))]
    key = data.draw(st.sampled_from(sorted(item) + ["extra"]))
    item[key] = data.draw(_extremes())
    try:
        model = _load(tmp_path, join(header, payload))
    except (dz.DzipFormatError, dz.ModelMismatchError):
        return
    for k, v in model.state_dict().items():
        assert torch.equal(v, weights[k])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(0, 10**6), flips=st.sets(st.integers(0, 10**6), min_size=1, max_size=4))
def test_truncations_and_bit_flips_never_escape(tmp_path, valid, cut, flips):
    blob = bytearray(valid[0])
    for f in flips:
        blob[f % len(blob)] ^= 1 << (f % 8)
    mutants = [valid[0][: cut % len(valid[0])]]
    if bytes(blob) != valid[0]:  # two flips of one bit cancel out
        mutants.append(bytes(blob))
    for mutant in mutants:
        with pytest.raises(dz.DzipFormatError):
            _load(tmp_path, mutant)


def test_truncation_at_every_stream_boundary(tmp_path, valid):
    header, _ = split(valid[0])
    start = len(valid[0]) - 4 - sum(s["length"] for s in header["streams"])
    for s in header["streams"]:
        with pytest.raises(dz.DzipFormatError):
            _load(tmp_path, valid[0][: start + s["offset"]])


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(dz.DzipFormatError, match="does not exist"):
        dz.load(tmp_path / "nope.dzip")
    with pytest.raises(dz.DzipFormatError, match="directory"):
        dz.load(tmp_path)


CHILD = textwrap.dedent("""
    import os, sys, time
    import torch, deepzip as dz
    from deepzip.dzip import container as fmt
    path, marker = sys.argv[1], sys.argv[2]
    real_fsync = os.fsync
    def slow_fsync(fd):
        open(marker, "w").close()   # the new file is being written: kill me now
        time.sleep(60)
        real_fsync(fd)
    fmt.os.fsync = slow_fsync
    torch.manual_seed(1)
    dz.save(dz.create_model("lenet300"), path)
""")


def test_killed_save_leaves_the_old_file_intact(tmp_path, tiny_mlp):
    path = tmp_path / "m.dzip"
    dz.save(tiny_mlp, path)
    old = path.read_bytes()
    marker = tmp_path / "writing"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path), str(marker)])
    deadline = time.time() + 60
    while not marker.exists() and time.time() < deadline and child.poll() is None:
        time.sleep(0.05)
    assert marker.exists(), "the child never reached the middle of save"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert path.read_bytes() == old
    assert dz.load(path) is not None
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["m.dzip", "writing"]


def test_more_hostile_headers(tmp_path, valid):
    import zlib

    huge_int = zlib.compress(b'{"streams": [], "tensors": [], "x": ' + b"1" * 5000 + b"}")
    with pytest.raises(dz.DzipFormatError, match="corrupt header"):
        _load(tmp_path, join({}, b"", header_bytes=huge_int))
    deep = _mutate(valid[0], lambda h, p: h.update(arch={"name": "densenet100", "kwargs": {"depth": 600000004}}))
    with pytest.raises(dz.DzipFormatError, match="out of range"):
        _load(tmp_path, deep)
    bad_size = _mutate(valid[0], lambda h, p: h["arch"]["kwargs"].update(classes=1.5))
    with pytest.raises(dz.DzipFormatError, match="cannot be built"):
        _load(tmp_path, bad_size)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_headers_under_the_sparse_runtime(tmp_path, valid, data):
    blob, weights = valid
    header, payload = split(blob)
    item = data.draw(st.sampled_from(header["tensors"]))
    key = data.draw(st.sampled_from(sorted(item) + ["nonzero"]))
    item[key] = data.draw(_extremes())
    p = tmp_path / "bad.dzip"
    p.write_bytes(join(header, payload))
    try:
        model = dz.load(p, runtime="sparse")
    except (dz.DzipFormatError, dz.ModelMismatchError):
        return
    x = torch.randn(4, 1, 8, 8)
    torch.testing.assert_close(model(x), dz.load(tmp_path / "bad.dzip")(x), rtol=1e-5, atol=1e-6)


FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


@pytest.mark.parametrize("name", ["v1-lenet300", "v1-lenet300-ans", "v3-lenet300-context"])
def test_older_files_still_load_bit_identically(name):
    """Files written by earlier deepzips load to the very weights they held (sha256 of each
    tensor's bytes): version 1, before the lean container (Huffman and ANS tables in the header,
    a crc32 per stream), and version 3, context coded before left contexts existed."""
    import hashlib
    import json

    path = os.path.join(FIXTURES, f"{name}.dzip")
    with open(path, "rb") as f:
        assert f.read(6)[4:] == bytes([int(name[1]), 0])  # still the version it was written as
    expected = json.load(open(os.path.join(FIXTURES, f"{name}.sha256.json")))
    state = dz.load(path).state_dict()
    assert sorted(state) == sorted(expected)
    for key, value in state.items():
        digest = hashlib.sha256(value.contiguous().view(-1).view(torch.uint8).numpy().tobytes()).hexdigest()
        assert digest == expected[key], key


def test_version_1_stream_checksums_are_still_checked(tmp_path):
    with open(os.path.join(FIXTURES, "v1-lenet300.dzip"), "rb") as f:
        blob = f.read()
    header, payload = split(blob)
    header["streams"][1]["crc32"] ^= 1
    with pytest.raises(dz.DzipFormatError, match="fails its checksum"):
        _load(tmp_path, join(header, payload, version=1))


def test_version_3_stream_kinds_in_an_older_file_are_refused(tmp_path, valid):
    import zlib

    header, payload = split(valid[0])
    for s in header["streams"]:  # make it a well-formed version 1 stream table
        s["crc32"] = zlib.crc32(payload[s["offset"]:s["offset"] + s["length"]])
    with pytest.raises(dz.DzipFormatError, match="version 1 file cannot be"):
        _decode_all(tmp_path, join(header, payload, version=1))


def test_only_a_file_that_needs_left_contexts_is_version_4(tmp_path, valid):
    """Version 3 readers read every file that does not use version 4's one addition."""
    src = tmp_path / "valid.dzip"
    src.write_bytes(valid[0])
    for coder, version in (("ans", 3), ("huffman", 3), ("context", 4)):
        dz.recode(src, tmp_path / f"{coder}.dzip", coder=coder)
        assert (tmp_path / f"{coder}.dzip").read_bytes()[4:6] == bytes([version, 0]), coder
