"""The .dzip container: bytes on disk, written atomically and read without trusting anything.

    magic "DZIP" | u16 version | u16 flags | u64 header_len | header (deflated UTF-8 JSON) | payload | u32 crc32

All integers little-endian. The header lists every stream (its length and coder; versions 1 and 2
also an offset, a crc32 and a base64 code table) and every tensor (which streams rebuild it);
docs/FORMAT.md is the spec. Version 3 streams lie back to back in the order listed, and the one
crc32 at the end covers every byte, so they need no offsets or checksums of their own.
This module knows streams, not tensors: write.py turns tensors into streams, decode.py streams
back into positions, codes and values.

Reading checks, in order: the file is long enough, the magic, the version, the flags, that the
header length fits the file and a fixed bound, the checksum of the whole file, that the header
inflates within a bound set by the file's size and is JSON of the right shape, that every stream
lies inside the payload, and each stream's checksum as it is read.
Every failure is a DzipFormatError whose message is one sentence. No pickle anywhere.
"""
from __future__ import annotations

import base64
import json
import os
import re
import tempfile
import zlib
from pathlib import Path
from typing import Any, BinaryIO

from ..checks import is_uint
from ..errors import ConfigError, DzipFormatError
from ..files import atomic_path
from .spec import (
    FILE_NAME,
    FILES_VERSION,
    FLAG_DEFLATE,
    LEAN_VERSION,
    MAGIC,
    MAX_FILES,
    MAX_HEADER_BYTES,
    PREAMBLE,
    TRAILER,
    VERSION,
)

_CHUNK = 1 << 20


class DzipWriter:
    """Collects streams, then writes the file in one atomic step.

    Streams go to a spool file beside the target as they come (so a large model is never held
    in memory whole); `finish` writes preamble + header + spooled payload to a second temporary
    file, fsyncs it and renames it over the target. An error, or a kill, at any point leaves the
    previous file at `path` untouched and nothing under the final name.

    Examples:
        >>> with DzipWriter("m.dzip") as w:
        ...     i = w.add(b"\\x00\\x01", {"coder": "raw"})
        ...     w.finish({"tensors": [...]})
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise IsADirectoryError(f"cannot write a .dzip to {self.path}: it is a directory.")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # An anonymous file (unlinked at once; O_TMPFILE on Linux): a save killed by SIGKILL leaves
        # no spool behind, as a named one would, for good.
        self._spool = tempfile.TemporaryFile(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".payload")
        self.streams: list[dict[str, Any]] = []

    def add(self, data: bytes, meta: dict[str, Any]) -> int:
        """Append one stream; returns its index for the header's tensor entries."""
        self._spool.write(data)
        self.streams.append({**meta, "length": len(data)})
        return len(self.streams) - 1

    def finish(self, header: dict[str, Any], version: int = VERSION) -> int:
        """Write the file (at format `version`, 3 or later: streams back to back, one checksum);
        returns its size in bytes."""
        if version < LEAN_VERSION:
            raise ConfigError(f"this deepzip writes .dzip version {LEAN_VERSION} or later, not {version}.")
        header = {**header, "streams": self.streams}
        blob = zlib.compress(json.dumps(header, separators=(",", ":"), allow_nan=False).encode("utf-8"), 9)
        self._spool.flush()
        self._spool.seek(0)
        try:
            with atomic_path(self.path) as tmp, open(tmp, "wb") as out:
                crc = 0
                for piece in (PREAMBLE.pack(MAGIC, version, FLAG_DEFLATE, len(blob)), blob):
                    out.write(piece)
                    crc = zlib.crc32(piece, crc)
                while chunk := self._spool.read(_CHUNK):
                    out.write(chunk)
                    crc = zlib.crc32(chunk, crc)
                out.write(TRAILER.pack(crc))
                size = out.tell()
        finally:
            self._close_spool()
        return size

    def _close_spool(self) -> None:
        self._spool.close()

    def __enter__(self) -> DzipWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self._close_spool()


def _no_constant(name: str) -> None:
    """NaN and Infinity are not JSON, and no writer of .dzip puts them in a header."""
    raise ValueError(f"{name} is not JSON")


def _need(cond: bool, message: str) -> None:
    if not cond:
        raise DzipFormatError(message)


class DzipReader:
    """Opens and validates a .dzip; `read(i)` returns stream i's bytes after checking its crc32.

    Examples:
        >>> with DzipReader("model.dzip") as r:
        ...     r.header["arch"], len(r.streams)
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        try:
            self._f: BinaryIO = open(self.path, "rb")
        except FileNotFoundError:
            raise DzipFormatError(f"{self.path} does not exist.") from None
        except IsADirectoryError:
            raise DzipFormatError(f"{self.path} is a directory, not a .dzip file.") from None
        try:
            self._open()
        except BaseException:
            self._f.close()
            raise

    def _open(self) -> None:
        name = self.path.name
        self.size = os.fstat(self._f.fileno()).st_size
        _need(self.size >= PREAMBLE.size + TRAILER.size,
              f"{name} is not a .dzip file: it is only {self.size} bytes long.")
        magic, version, self.flags, header_len = PREAMBLE.unpack(self._f.read(PREAMBLE.size))
        _need(magic == MAGIC, f"{name} is not a .dzip file: it starts with {magic!r}, not {MAGIC!r}.")
        _need(1 <= version <= VERSION,
              f"{name} is .dzip version {version}, which this deepzip (reads up to {VERSION}) cannot read.")
        self.version = version
        _need(header_len <= MAX_HEADER_BYTES and PREAMBLE.size + header_len + TRAILER.size <= self.size,
              f"{name} is truncated or corrupt: its header claims {header_len} bytes but the file has {self.size}.")
        _need(self.flags & ~FLAG_DEFLATE == 0, f"{name} uses flags {self.flags:#x} that this deepzip does not know.")
        self._check_crc(name)
        self._f.seek(PREAMBLE.size)
        blob = self._f.read(header_len)
        if self.flags & FLAG_DEFLATE:
            # Bounded inflate: a small hostile header must not expand into gigabytes.
            inflater = zlib.decompressobj()
            limit = min(MAX_HEADER_BYTES, (1 << 20) + 64 * self.size)
            try:
                blob = inflater.decompress(blob, limit)
            except zlib.error:
                raise DzipFormatError(f"{name} has a corrupt header: it does not inflate.") from None
            _need(inflater.eof and not inflater.unconsumed_tail,
                  f"{name} has a corrupt header: it inflates past {limit} bytes or ends early.")
        try:
            header = json.loads(blob.decode("utf-8"), parse_constant=_no_constant)
        except (UnicodeDecodeError, ValueError, RecursionError) as e:  # ValueError: JSONDecodeError, huge ints
            raise DzipFormatError(f"{name} has a corrupt header: {type(e).__name__}.") from None
        _need(isinstance(header, dict), f"{name} has a corrupt header: it is not a JSON object.")
        self.header = header
        self.payload_start = PREAMBLE.size + header_len
        self.payload_len = self.size - TRAILER.size - self.payload_start
        streams = header.get("streams")
        _need(isinstance(streams, list), f"{name} has a corrupt header: 'streams' is not a list.")
        lean = version >= LEAN_VERSION
        fields = ("length",) if lean else ("offset", "length", "crc32")
        end = 0
        for i, s in enumerate(streams):
            _need(isinstance(s, dict) and all(is_uint(s.get(k)) for k in fields),
                  f"{name} has a corrupt header: stream {i} lacks a valid {'length' if lean else 'offset, length or crc32'}.")
            if lean:  # back to back: the offset is where the previous stream ended
                streams[i] = s = {**s, "offset": end}
            end = s["offset"] + s["length"]
            _need(end <= self.payload_len,
                  f"{name} is truncated or corrupt: stream {i} ends at byte {end} of a {self.payload_len}-byte payload.")
        _need(not lean or end == self.payload_len,
              f"{name} is corrupt: its streams cover {end} bytes of a {self.payload_len}-byte payload.")
        self.streams: list[dict[str, Any]] = streams

    def _check_crc(self, name: str) -> None:
        self._f.seek(0)
        remaining = self.size - TRAILER.size
        crc = 0
        while remaining:
            chunk = self._f.read(min(_CHUNK, remaining))
            if not chunk:
                break
            crc = zlib.crc32(chunk, crc)
            remaining -= len(chunk)
        (stored,) = TRAILER.unpack(self._f.read(TRAILER.size))
        _need(crc == stored, f"{name} is corrupt: its checksum does not match its contents.")

    def stream(self, index: Any) -> dict[str, Any]:
        _need(is_uint(index) and index < len(self.streams),
              f"{self.path.name} has a corrupt header: a tensor refers to stream {index!r}, "
              f"but there are {len(self.streams)}.")
        return self.streams[index]

    def read(self, index: Any) -> bytes:
        s = self.stream(index)
        self._f.seek(self.payload_start + s["offset"])
        data = self._f.read(s["length"])
        # Version 3 streams have no checksum of their own: the whole file's was checked on open.
        _need(len(data) == s["length"] and ("crc32" not in s or zlib.crc32(data) == s["crc32"]),
              f"{self.path.name} is corrupt: stream {index} fails its checksum.")
        return data

    def file_entries(self) -> list[dict[str, Any]]:
        """The header's carried files (version 6), checked as every reader checks them: a list of
        at most MAX_FILES objects, each a unique `name` (spec.FILE_NAME), a raw `stream` and the
        `length` it inflates to, all lengths together within the header's own inflate bound."""
        name, files = self.path.name, self.header.get("files") if self.version >= FILES_VERSION else None
        if files is None:
            return []
        _need(isinstance(files, list) and len(files) <= MAX_FILES,
              f"{name} is corrupt: 'files' is not a list of at most {MAX_FILES}.")
        seen, total = set(), 0
        for i, e in enumerate(files):
            _need(isinstance(e, dict) and isinstance(e.get("name"), str) and re.fullmatch(FILE_NAME, e["name"])
                  and e["name"] not in seen and is_uint(e.get("length")) and is_uint(e.get("stream"))
                  and e["stream"] < len(self.streams),
                  f"{name} is corrupt: carried file {i} lacks a valid, unique name, a length or a stream.")
            _need(self.streams[e["stream"]].get("coder") == "raw",
                  f"{name} is corrupt: carried file {e['name']!r} is not in a raw stream.")
            seen.add(e["name"])
            total += e["length"]
        _need(total <= (1 << 20) + 64 * self.size, f"{name} is corrupt: its carried files claim {total} bytes.")
        return files

    def files(self) -> dict[str, bytes]:
        """The carried files by name, inflated (each exactly its recorded length).

        Examples:
            >>> with DzipReader("minilm.dzip") as r:
            ...     sorted(r.files())
            ['special_tokens_map.json', 'tokenizer.json', 'tokenizer_config.json']
        """
        out = {}
        for e in self.file_entries():
            inflater = zlib.decompressobj()
            try:
                data = inflater.decompress(self.read(e["stream"]), e["length"] + 1)
            except zlib.error:
                data = b""
            _need(inflater.eof and len(data) == e["length"],
                  f"{self.path.name} is corrupt: its file {e['name']!r} does not inflate to {e['length']} bytes.")
            out[e["name"]] = data
        return out

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> DzipReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()



def leb128(values) -> bytes:
    """Non-negative ints as LEB128 varints (7 bits a byte, low bits first): a 5-bit codebook's
    Huffman lengths cost a byte each, ANS counts a byte per 7 bits they need."""
    out = bytearray()
    for v in values:
        v = int(v)
        while True:
            byte = v & 0x7F
            v >>= 7
            out.append(byte | (0x80 if v else 0))
            if not v:
                break
    return bytes(out)


def read_leb128(raw: bytes, count: int, what: str) -> tuple[list[int], int]:
    """The first `count` LEB128 varints of `raw` and the bytes they took; refuses a value over
    2^63 or a `raw` that ends before `count` values."""
    values: list[int] = []
    v = shift = 0
    used = 0
    for byte in raw:
        if len(values) == count:
            break
        used += 1
        v |= (byte & 0x7F) << shift
        shift += 7
        _need(shift <= 63, f"{what} holds a value too large to be a count.")
        if not byte & 0x80:
            values.append(v)
            v = shift = 0
    _need(len(values) == count, f"{what} ends before its {count} entries.")
    return values, used


def unpack_ints(text: Any, limit: int, what: str) -> list[int]:
    """A version 1 or 2 code table (base64 of LEB128 varints, in the header); refuses more than
    `limit` values or a value over 2^63."""
    _need(isinstance(text, str), f"{what} is not a packed integer table.")
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError):
        raise DzipFormatError(f"{what} is not valid base64.") from None
    values: list[int] = []
    v = shift = 0
    for byte in raw:
        v |= (byte & 0x7F) << shift
        shift += 7
        _need(shift <= 63, f"{what} holds a value too large to be a count.")
        if not byte & 0x80:
            values.append(v)
            _need(len(values) <= limit, f"{what} has more than {limit} entries.")
            v = shift = 0
    _need(shift == 0, f"{what} ends in the middle of a number.")
    return values
