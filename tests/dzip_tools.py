"""Helpers for tests that take .dzip files apart and put them back together."""
import json
import struct
import zlib

from deepzip.dzip.spec import FLAG_DEFLATE, LEAN_VERSION, MAGIC, PREAMBLE, VERSION


def split(blob: bytes) -> tuple[dict, bytes]:
    """(header, payload); a version 3 header's streams get the offsets its reader computes, so a
    test can find a stream's bytes (join leaves them in: the reader ignores them)."""
    _, version, flags, n = PREAMBLE.unpack(blob[:16])
    raw = blob[16:16 + n]
    header = json.loads(zlib.decompress(raw) if flags & FLAG_DEFLATE else raw)
    if version >= LEAN_VERSION:
        end = 0
        for s in header["streams"]:
            s["offset"], end = end, end + s["length"]
    return header, blob[16 + n:-4]


def join(header: dict, payload: bytes, *, magic=MAGIC, version=VERSION, flags=FLAG_DEFLATE,
         header_bytes: bytes | None = None, header_len: int | None = None) -> bytes:
    """A file with a valid checksum around whatever header and payload a test wants."""
    if header_bytes is None:
        header_bytes = json.dumps(header).encode()
        if flags & FLAG_DEFLATE:
            header_bytes = zlib.compress(header_bytes)
    body = PREAMBLE.pack(magic, version, flags, len(header_bytes) if header_len is None else header_len)
    body += header_bytes + payload
    return body + struct.pack("<I", zlib.crc32(body))
