"""The paper's Table 2, computed from what is actually in a .dzip, not from estimates.

For each layer: weights, fraction kept, bits per kept weight before and after entropy coding,
bits per kept weight spent on positions before and after, and the layer's bytes on disk as a
percentage of its dense float32 size.
"""
from __future__ import annotations

import json
import math
import os
import zlib
from typing import Any

from ..dzip import DzipReader
from ..dzip.spec import LEAN_VERSION, PREAMBLE, STREAM_KEYS, TRAILER
from ..errors import DzipFormatError
from ..runtime import choose


def _stream_bytes(streams: list[dict], index: Any) -> int:
    return streams[index]["length"] if isinstance(index, int) and 0 <= index < len(streams) else 0


def layer_rows(header: dict[str, Any]) -> list[dict[str, Any]]:
    """The per-layer table of a header (parameters only; aliases of tied tensors skipped)."""
    streams = header["streams"]
    rows = []
    for e in header["tensors"]:
        if "alias" in e or e.get("role") != "param":
            continue
        numel = math.prod(e["shape"])
        total = sum(_stream_bytes(streams, e.get(k)) for k in STREAM_KEYS)  # live bitmaps included
        runtime, why = choose(layer=e.get("layer"), name=e["name"], numel=numel, nonzero=e.get("nonzero"),
                              encoding=e["encoding"], runtime="sparse")
        row = {"layer": e["name"], "weights": numel, "encoding": e["encoding"], "kept": 1.0,
               "matrix": len(e["shape"]) >= 2 and e.get("dtype") in ("float32", "float16", "float64", "bfloat16"),
               "bytes": total, "percent_of_dense": 100.0 * total / max(1, 4 * numel),
               "runtime": runtime, "runtime_reason": why}
        if e["encoding"] in ("shared", "sparse"):
            kept = max(1, e["nonzero"])
            row["kept"] = e["nonzero"] / max(1, numel)
            values = streams[e["values"]]
            if e["encoding"] == "shared":
                k = _stream_bytes(streams, e["codebook"]) // (2 if e.get("stored") == "float16" else 4)
                row["weight_bits"] = max(1, math.ceil(math.log2(k + 1)))
                row["weight_bits_coded"] = 8 * values["length"] / kept
                row["coder"] = values["coder"]
            else:
                row["weight_bits"] = 32
                row["weight_bits_coded"] = 8 * values["length"] / kept
            if e.get("positions", "sparse") == "sparse":  # dense codes and context streams hold positions too
                gaps = streams[e["gaps"]]
                row["index_bits"] = e["index_bits"]
                row["index_bits_coded"] = 8 * gaps["length"] / kept
                row["entries"] = gaps["count"]
            else:
                row["index_bits"] = row["index_bits_coded"] = 0
        rows.append(row)
    return rows


def inspect(path: str | os.PathLike) -> dict[str, Any]:
    """What a .dzip holds: architecture, metadata, per-layer table, sizes. Validates the file.

    Examples:
        >>> info = dz.inspect("model.dzip"); info["ratio"], info["layers"][0]["kept"]
    """
    with DzipReader(path) as r:
        header = r.header
        size = r.size
        header_bytes, payload_bytes = r.payload_start - PREAMBLE.size, r.payload_len
        version = r.version
        carried = {e["name"]: {"length": e["length"], "bytes": r.streams[e["stream"]]["length"]}
                   for e in r.file_entries()}
    try:
        rows = layer_rows(header)
        params = sum(math.prod(e["shape"]) for e in header["tensors"] if e.get("role") == "param")
        ratio = 4 * params / size
        by_role = {role: sum(_stream_bytes(header["streams"], e.get(k)) for e in header["tensors"]
                             if "alias" not in e and e.get("role") == role for k in STREAM_KEYS)
                   for role in ("param", "buffer")}
    except (KeyError, TypeError, IndexError, AttributeError, ValueError, OverflowError, ZeroDivisionError):
        raise DzipFormatError(f"{os.fspath(path)} is corrupt: its tensor table is malformed.") from None
    arch = header.get("arch")
    meta = header.get("meta")
    # Weight matrices stored as they were, neither pruned nor shared: said, never hidden.
    uncompressed = [r["layer"] for r in rows if r["encoding"] == "raw" and r["matrix"]]
    # A channel-pruned file is compared with the full-width model its registry name builds.
    widths, original = header.get("widths"), params
    if isinstance(widths, dict) and widths and isinstance(arch, dict) and "name" in arch:
        from ..dzip.assemble import build_model

        full = build_model(header, os.fspath(path))
        original = sum(p.numel() for p in full.parameters())
        modules = dict(full.named_modules())
        widths = {name: {attr: (getattr(modules[name], attr, None), value) for attr, value in change.items()}
                  for name, change in widths.items() if name in modules and isinstance(change, dict)}
        ratio = 4 * original / size
    # Every byte of the file, by what it holds; they add up to file_bytes.
    files = sum(f["bytes"] for f in carried.values())
    parts = {"preamble": PREAMBLE.size, "header": header_bytes, "parameters": by_role["param"],
             "buffers": by_role["buffer"], "files": files,
             "unused": payload_bytes - by_role["param"] - by_role["buffer"] - files, "checksum": TRAILER.size}
    return {"file": os.fspath(path), "file_bytes": size, "dense_bytes": 4 * original, "parameters": params,
            "original_parameters": original, "widths": widths if isinstance(widths, dict) else {},
            "ratio": ratio, "arch": arch if isinstance(arch, dict) else None, "bytes": parts,
            "meta": meta if isinstance(meta, dict) else {}, "meta_bytes": _meta_bytes(header, version), "layers": rows,
            "uncompressed": uncompressed, "files": carried}


def _meta_bytes(header: dict[str, Any], version: int) -> int:
    """What the free-form "meta" (versions, accuracy, recipe) adds to the deflated header: the
    header deflated with and without it, as the writer deflates it."""
    def deflated(h: dict[str, Any]) -> int:
        return len(zlib.compress(json.dumps(h, separators=(",", ":"), allow_nan=False).encode("utf-8"), 9))

    lean = {k: v for k, v in header.items() if k != "meta"}
    if version >= LEAN_VERSION:  # the reader added offsets; the file has none
        lean["streams"] = [{k: v for k, v in s.items() if k != "offset"} for s in header["streams"]]
    return deflated({**lean, "meta": header.get("meta")}) - deflated(lean)


def layers_markdown(rows: list[dict[str, Any]]) -> str:
    """The per-layer table as Markdown, with a note on how to read it."""
    out = ["| layer | weights | kept | weight bits | weight bits coded | index bits | index bits coded | bytes "
           "| % of dense | sparse runtime |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        coded = lambda k, r=r: f"{r[k]:.2f}" if k in r else "—"  # noqa: E731
        out.append(f"| {r['layer']} | {r['weights']:,} | {100 * r['kept']:.1f}% | {r.get('weight_bits', 32)} | "
                   f"{coded('weight_bits_coded')} | {r.get('index_bits', '—')} | {coded('index_bits_coded')} | "
                   f"{r['bytes']:,} | {r['percent_of_dense']:.2f}% | {r['runtime']} ({r['runtime_reason']}) |")
    out.append("")
    out.append("Bits are per kept weight. A layer with index bits 0 codes its positions with its codes: a code for "
               "every weight, zero included, or (coder context) one context-adaptive stream of both; whichever was "
               "smaller than gaps at its density. Its weight bits coded include its positions.")
    return "\n".join(out)


def inspect_text(info: dict[str, Any], name: str) -> str:
    """What `deepzip inspect` prints of `inspect(path)`: the architecture and sizes, the scores
    recorded at saving, the paper's per-layer table, every byte, what is stored uncompressed,
    and the widths channel surgery left.

    Examples:
        >>> print(inspect_text(inspect("model.dzip"), "model.dzip"))
    """
    from ..models.sources import describe

    lines = [f"{name}: {describe(info['arch'])}, {info['parameters']:,} parameters, {info['file_bytes']:,} bytes on "
             f"disk, {info['ratio']:.1f}× smaller than {info['dense_bytes']:,} dense bytes"]
    acc = info["meta"].get("accuracy") if isinstance(info["meta"], dict) else None
    if isinstance(acc, dict) and all(isinstance(v, (int, float)) for v in acc.values()):
        lines.append("accuracy when saved (validation): " + ", ".join(f"{k} {v:.2f}%" for k, v in acc.items()))
    lines.append(layers_markdown(info["layers"]))
    lines.append("bytes: " + " + ".join(f"{v:,} {k}" for k, v in info["bytes"].items()
                                        if v or k not in ("unused", "files"))
                 + f" = {info['file_bytes']:,} (metadata — versions, accuracy, recipe — is {info['meta_bytes']:,} "
                 f"of the header's bytes; save(metadata=…) chooses it)")
    if info.get("files"):
        lines.append("files carried: " + ", ".join(f"{k} ({v['length']:,} bytes, {v['bytes']:,} deflated)"
                                                   for k, v in info["files"].items()))
    if info["uncompressed"]:
        lines.append(f"not compressed (stored as they were): {', '.join(info['uncompressed'])}")
    if info["widths"]:
        lines.append(f"channel surgery: {info['original_parameters']:,} → {info['parameters']:,} parameters")
        lines.append("| layer | width | original | kept |\n|---|---|---:|---:|")
        lines += [f"| {layer} | {attr} | {was if was is not None else '?'} | {now} |"
                  for layer, change in info["widths"].items() for attr, (was, now) in change.items()]
    return "\n".join(lines)
