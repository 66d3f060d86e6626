"""Deterministic mutants of valid .dzip files, for holding the C reader's verdicts to Python's.

A byte flip alone is caught by the file's crc32, so most mutants are re-sealed: the payload or
the header changed and the checksum written again, so that the change reaches the decoders.
Each generator takes (blob, rng) and returns a new blob; `mutants(blob, seed, n)` mixes them.
"""
from __future__ import annotations

import copy
import json
import random
import struct
import zlib

from dzip_tools import join, split


def _seal(body: bytes) -> bytes:
    """body (everything but the trailer) with its crc32 appended."""
    return body + struct.pack("<I", zlib.crc32(body))


def flip(blob: bytes, rng: random.Random) -> bytes:
    """A bit flipped anywhere, checksum left as it was: the crc32 must catch it."""
    b = bytearray(blob)
    i = rng.randrange(len(b))
    b[i] ^= 1 << rng.randrange(8)
    return bytes(b)


def truncate(blob: bytes, rng: random.Random) -> bytes:
    return blob[:rng.randrange(len(blob))]


def payload_flip(blob: bytes, rng: random.Random) -> bytes:
    """Bits flipped inside one stream, checksum re-sealed: only the stream's decoder can tell."""
    header, payload = split(blob)
    streams = [s for s in header["streams"] if s["length"]]
    s = rng.choice(streams)
    b = bytearray(blob)
    start = len(blob) - 4 - len(payload) + s["offset"]
    for _ in range(rng.choice((1, 1, 2, 3))):
        i = start + rng.randrange(s["length"])
        b[i] ^= 1 << rng.randrange(8)
    return _seal(bytes(b[:-4]))


def payload_cut(blob: bytes, rng: random.Random) -> bytes:
    """A stream made shorter or longer (its length edited to match), checksum re-sealed."""
    header, payload = split(blob)
    i = rng.randrange(len(header["streams"]))
    s = header["streams"][i]
    start, end = s["offset"], s["offset"] + s["length"]
    if s["length"] and rng.random() < 0.6:
        cut = rng.randrange(1, min(s["length"], 4) + 1)
        payload = payload[:end - cut] + payload[end:]
        s["length"] -= cut
    else:
        extra = bytes(rng.choice((0, 0x5A, 0xFF, rng.randrange(256))) for _ in range(rng.randrange(1, 5)))
        payload = payload[:end] + extra + payload[end:]
        s["length"] += len(extra)
    for later in header["streams"][i + 1:]:
        later["offset"] += s["length"] - (end - start)
    return _rejoin(blob, header, payload)


def _rejoin(blob: bytes, header: dict, payload: bytes, version: int | None = None) -> bytes:
    version = blob[4] if version is None else version
    if version >= 3 and isinstance(header.get("streams"), list):
        for s in header["streams"]:
            if isinstance(s, dict):
                s.pop("offset", None)
    return join(header, payload, version=version)


EXTREMES = [0, 1, 2, -1, 3, 7, 16, 17, 255, 256, 65536, 65537, 2**31, 2**53 + 1, 2**63, 2**64 + 1, 10**30, 0.5, 1.0, -0.0,
            1e308, "", "raw", "huffman", "ans", "context", "context-left", "float16", "float32", "int8", "bool", "shared",
            "sparse", "dense", "x" * 200, None, True, False, [], {}, [2**40], [0], [3, 0], [1] * 9]


def _bump(value, rng):
    if isinstance(value, bool) or not isinstance(value, int):
        return rng.choice(EXTREMES)
    return max(0, value + rng.choice((-2, -1, 1, 2))) if rng.random() < 0.7 else rng.choice(EXTREMES)


def header_edit(blob: bytes, rng: random.Random) -> bytes:
    """One field of one stream or tensor entry changed, removed or added; file re-sealed."""
    header, payload = split(blob)
    header = copy.deepcopy(header)
    target = rng.choice(["stream", "tensor", "tensor", "top"])
    if target == "top":
        key = rng.choice(["streams", "tensors", "arch", "meta", "widths", "format"])
        if rng.random() < 0.5:
            header.pop(key, None)
        else:
            header[key] = rng.choice(EXTREMES)
        return _rejoin(blob, header, payload)
    items = header["streams"] if target == "stream" else header["tensors"]
    item = rng.choice(items)
    keys = sorted(item) + ["extra", "crc32", "stored", "split", "rows", "cols", "alias", "table"]
    key = rng.choice(keys)
    roll = rng.random()
    if roll < 0.15:
        item.pop(key, None)
    elif roll < 0.6 and key in item:
        item[key] = _bump(item[key], rng) if not isinstance(item[key], list) else \
            [_bump(v, rng) for v in item[key]] if rng.random() < 0.5 else item[key][::-1]
    elif target == "stream" and key == "crc32" and rng.random() < 0.5:
        s = item
        item[key] = zlib.crc32(payload[s["offset"]:s["offset"] + s["length"]])  # a crc that is right
    else:
        item[key] = rng.choice(EXTREMES + [rng.randrange(len(header["streams"]))])
    version = blob[4]
    if rng.random() < 0.1:
        version = rng.choice((1, 2, 3, 4))
    return _rejoin(blob, header, payload, version)


def swap(blob: bytes, rng: random.Random) -> bytes:
    """Two stream references swapped between tensor fields, or two entries reordered."""
    header, payload = split(blob)
    refs = [(e, k) for e in header["tensors"] for k in ("data", "codebook", "values", "gaps", "rows", "cols", "high", "low")
            if k in e]
    if rng.random() < 0.5 and len(refs) > 1:
        (a, ka), (b, kb) = rng.sample(refs, 2)
        a[ka], b[kb] = b[kb], a[ka]
    else:
        i, j = rng.randrange(len(header["tensors"])), rng.randrange(len(header["tensors"]))
        header["tensors"][i], header["tensors"][j] = header["tensors"][j], header["tensors"][i]
    return _rejoin(blob, header, payload)


TEXT_NOISE = '{}[],:"\\0123456789-+.eEtrufalsn u\t\n\x00\x7f\u00e9\ud800'


def text_edit(blob: bytes, rng: random.Random) -> bytes:
    """The header's JSON text edited as characters (mostly no longer JSON), deflated and sealed."""
    header, payload = split(blob)
    if blob[4] >= 3:
        for s in header["streams"]:
            s.pop("offset", None)
    text = json.dumps(header, separators=(",", ":"))
    for _ in range(rng.choice((1, 1, 2))):
        i = rng.randrange(len(text))
        op = rng.random()
        if op < 0.3:
            text = text[:i] + text[i + 1:]
        elif op < 0.6:
            text = text[:i] + rng.choice(TEXT_NOISE) + text[i:]
        elif op < 0.8:
            text = text[:i] + rng.choice(TEXT_NOISE) + text[i + 1:]
        else:
            j = min(len(text), i + rng.randrange(1, 12))
            text = text[:j] + text[i:j] + text[j:]
    raw = text.encode("utf-8", "surrogatepass")
    deflate = rng.random() < 0.9
    return join({}, payload, version=blob[4], header_bytes=zlib.compress(raw) if deflate else raw, flags=int(deflate))


def deflate_flip(blob: bytes, rng: random.Random) -> bytes:
    """Bits flipped in the deflated header itself, checksum re-sealed: the inflater must refuse
    exactly what zlib refuses."""
    n = struct.unpack("<Q", blob[8:16])[0]
    b = bytearray(blob)
    for _ in range(rng.choice((1, 1, 2))):
        i = 16 + rng.randrange(n)
        b[i] ^= 1 << rng.randrange(8)
    return _seal(bytes(b[:-4]))


def raw_header(blob: bytes, rng: random.Random) -> bytes:
    """The same header stored uncompressed (flags 0), sometimes with trailing bytes after the
    zlib stream (which zlib ignores) when compressed."""
    header, payload = split(blob)
    if blob[4] >= 3:
        for s in header["streams"]:
            s.pop("offset", None)
    text = json.dumps(header).encode()
    if rng.random() < 0.5:
        return join({}, payload, version=blob[4], header_bytes=text, flags=0)
    return join({}, payload, version=blob[4], header_bytes=zlib.compress(text) + bytes(rng.randrange(1, 4)))


GENERATORS = [(flip, 1), (truncate, 1), (payload_flip, 6), (payload_cut, 2), (header_edit, 7), (swap, 1),
              (text_edit, 3), (deflate_flip, 2), (raw_header, 1)]


def mutants(blob: bytes, seed: int, n: int):
    """n mutants of blob, the same ones for the same seed: (generator name, bytes)."""
    rng = random.Random(seed)
    names, weights = zip(*GENERATORS)
    for _ in range(n):
        gen = rng.choices(names, weights)[0]
        yield gen.__name__, gen(blob, rng)
