"""Files carried beside the tensors (format version 6, a tokenizer): both readers accept what
deepzip writes and return the same bytes, and refuse the same hostile `files` lists."""
import copy
import zlib

import dzc
import pytest
from dzip_tools import join, split

import deepzip as dz
from deepzip.dzip import DzipReader

FILES = {"tokenizer.json": b'{"vocab": ["[PAD]", "hello"]}' * 50, "1_Pooling/config.json": b"{}", "empty.txt": b""}


@pytest.fixture(scope="module")
def carried(tmp_path_factory):
    path = tmp_path_factory.mktemp("carried") / "m.dzip"
    m = dz.create_model("lenet300", image_size=8, classes=4)
    dz.prune_(m, sparsity=0.5)
    dz.share_weights_(m, bits=3)
    dz.save(m, path, files=FILES)
    return path


def test_both_readers_return_the_carried_files_and_a_load_keeps_them(libdzip, carried, tmp_path):
    c, why = dzc.c_read(carried, libdzip["default"])
    assert c is not None, why
    assert c.version == 6 and c.files == FILES
    with DzipReader(carried) as r:
        assert r.files() == FILES
    again = tmp_path / "again.dzip"
    dz.save(dz.load(carried), again)  # the loaded model carries them on
    with DzipReader(again) as r:
        assert r.files() == FILES
    plain = tmp_path / "plain.dzip"
    dz.save(dz.create_model("lenet300", image_size=8, classes=4), plain)
    assert plain.read_bytes()[4] == 3  # no files: the version older readers read


def _variant(blob: bytes, change) -> bytes:
    header, payload = split(blob)
    header = copy.deepcopy(header)
    payload = change(header, payload) or payload
    for s in header["streams"]:
        s.pop("offset", None)
    return join(header, payload, version=blob[4])


def _restream(header, payload, name, data):
    """Replace carried file `name`'s stream bytes (moving the streams after it)."""
    e = next(f for f in header["files"] if f["name"] == name)
    s = header["streams"][e["stream"]]
    out = payload[:s["offset"]] + data + payload[s["offset"] + s["length"]:]
    s["length"] = len(data)
    return out


HOSTILE = {
    "a name that climbs out": lambda h, p: h["files"][0].update(name="../evil"),
    "a hidden name": lambda h, p: h["files"][0].update(name=".bashrc"),
    "three segments": lambda h, p: h["files"][0].update(name="a/b/c"),
    "a name repeated": lambda h, p: h["files"][1].update(name=h["files"][0]["name"]),
    "an escaped repeat": lambda h, p: h["files"][1].update(name="tokenizer.jso\u006e"),
    "a stream twice": lambda h, p: h["files"][1].update(stream=h["files"][0]["stream"]),
    "a tensor's stream": lambda h, p: h["files"][0].update(stream=0),
    "a length too short": lambda h, p: h["files"][0].update(length=h["files"][0]["length"] - 1),
    "a length too long": lambda h, p: h["files"][0].update(length=h["files"][0]["length"] + 1),
    "a huge claim": lambda h, p: h["files"][0].update(length=1 << 40),
    "a length as a float": lambda h, p: h["files"][0].update(length=float(h["files"][0]["length"])),
    "not a list": lambda h, p: h.update(files={"tokenizer.json": 0}),
    "too many": lambda h, p: h.update(files=h["files"] * 22),
    "bytes that do not inflate": lambda h, p: _restream(h, p, "tokenizer.json", b"\x78\x9c" + b"\xff" * 40),
    "a bomb past its length": lambda h, p: _restream(h, p, "empty.txt", zlib.compress(b"\0" * 100000)),
}


@pytest.mark.parametrize("how", sorted(HOSTILE))
def test_a_hostile_files_list_is_refused_by_both_readers(libdzip, carried, tmp_path, how):
    path = tmp_path / "bad.dzip"
    path.write_bytes(_variant(carried.read_bytes(), HOSTILE[how]))
    c, c_why = dzc.c_read(path, libdzip["default"])
    py, py_why = dzc.python_read(path)
    assert c is None and py is None, f"{how}: C says {c_why or 'valid'}, Python {py_why or 'valid'}"
    assert "corrupt" in py_why and "corrupt" in c_why


def test_files_in_a_version_5_file_are_not_read_and_their_streams_count_as_unused(libdzip, carried, tmp_path):
    path = tmp_path / "v5.dzip"
    header, payload = split(carried.read_bytes())
    for s in header["streams"]:
        s.pop("offset", None)
    path.write_bytes(join(header, payload, version=5))
    c, c_why = dzc.c_read(path, libdzip["default"])
    py, py_why = dzc.python_read(path)
    assert c is None and py is None and "exactly once" in py_why and "exactly once" in c_why


@pytest.mark.parametrize("name", ["../x", "a/b/c", ".hidden", "", "x" * 65, "tokenizer.json\0"])
def test_save_refuses_a_name_no_reader_would_accept(tmp_path, name):
    with pytest.raises(dz.DeepzipError, match="carried file's name"):
        dz.save(dz.create_model("lenet300", image_size=8, classes=4), tmp_path / "m.dzip", files={name: b"x"})
    assert not (tmp_path / "m.dzip").exists()
