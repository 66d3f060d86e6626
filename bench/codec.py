"""Throughput and size of deepzip's entropy coders against dahuffman and zstandard.

    python bench/codec.py [--n 10000000] [--seed 0] [--dzip out/lenet300/model.dzip] [--no-large]

Prints one JSON line per (stream, coder): encode and decode speed in M symbols/s (best of 3 runs
after a warm-up, one run for zstd -19) and bits/symbol next to the stream's empirical entropy.
Code tables are not counted in bits/symbol. dahuffman is pure Python, so it runs on a 200 k-symbol
sample; zstandard gets the symbols as one byte each. Then the streams of real .dzip files, and
save/load of a VGG-16-sized model (wall time, peak RSS).
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dahuffman
import numpy as np
import zstandard

from deepzip.encode import ans_decode, ans_encode, code_lengths, huffman_decode, huffman_encode

DAHUFFMAN_SAMPLE = 200_000


def best_time(fn, repeats: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def entropy(symbols: np.ndarray) -> float:
    p = np.bincount(symbols) / symbols.size
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def deepzip_huffman(symbols, alphabet):
    lengths = code_lengths(np.bincount(symbols, minlength=alphabet))
    decode = lambda data: huffman_decode(data, lengths, symbols.size)  # noqa: E731
    return lambda: huffman_encode(symbols, lengths), decode, symbols, 3


def deepzip_ans(symbols, alphabet):
    counts = np.bincount(symbols, minlength=alphabet)
    return lambda: ans_encode(symbols, counts), lambda data: ans_decode(data, counts, symbols.size), symbols, 3


def dahuffman_sample(symbols, alphabet):
    sample = symbols[:DAHUFFMAN_SAMPLE].tolist()
    codec = dahuffman.HuffmanCodec.from_data(sample)
    return lambda: codec.encode(sample), codec.decode, np.array(sample), 1


def zstd(level: int):
    def make(symbols, alphabet):
        raw = symbols.astype(np.uint8).tobytes()
        compressor, decompressor = zstandard.ZstdCompressor(level=level), zstandard.ZstdDecompressor()
        decode = lambda data: np.frombuffer(decompressor.decompress(data), np.uint8)  # noqa: E731
        return lambda: compressor.compress(raw), decode, symbols, 1 if level >= 19 else 3
    return make


CODERS = {"deepzip-huffman": deepzip_huffman, "deepzip-ans": deepzip_ans, "dahuffman": dahuffman_sample,
          "zstd-19": zstd(19), "zstd-3": zstd(3)}


def streams(n: int, seed: int) -> dict[str, tuple[np.ndarray, int]]:
    rng = np.random.default_rng(seed)
    # Shared-weight codes: a 32-entry linear codebook over weights that crowd around zero.
    weights = np.clip(np.round(rng.laplace(15.5, 3.0, n)), 0, 31).astype(np.int32)
    # Relative-index gaps at ~5 % density, capped at 255 the way 8-bit fillers cap them.
    gaps = np.minimum(rng.geometric(0.05, n) - 1, 255).astype(np.int32)
    return {"codes-5bit": (weights, 32), "gaps-8bit": (gaps, 256)}


def dzip_streams(path: Path) -> None:
    """Every coded stream of a real .dzip, re-coded by each coder: bits/symbol with and without
    its table, against the stream's empirical entropy; and each shared layer's codes, positions
    included, by the context coder against the file's own streams for it."""
    from deepzip.dzip.container import DzipReader, read_leb128, unpack_ints
    from deepzip.dzip.decode import TensorDecoder
    from deepzip.dzip.spec import LEAN_VERSION, grid_shape
    from deepzip.encode import context
    from deepzip.encode.streams import decode_stream, encode_stream, table_bytes

    with DzipReader(path) as r:
        names = {e.get(k): f"{e['name']}:{k}" for e in r.header["tensors"] for k in ("values", "gaps") if k in e}
        for i, s in enumerate(r.streams):
            if s["coder"] not in ("huffman", "ans"):
                continue
            data = r.read(i)
            if r.version >= LEAN_VERSION:
                table, used = read_leb128(data, s["alphabet"], "table")
                data = data[used:]
            else:
                table = unpack_ints(s["table"], 1 << 16, "table")
            symbols = decode_stream(data, {**s, "table": table})
            if not symbols.size:  # e.g. the gaps of a layer stored with dense positions: nothing to rate
                continue
            h = entropy(symbols)
            row = {"file": path.name, "stream": names.get(i, str(i)), "symbols": int(symbols.size),
                   "alphabet": s["alphabet"], "entropy_bits": round(h, 4), "coder_in_file": s["coder"]}
            for coder in ("huffman", "ans"):
                data, meta = encode_stream(symbols, s["alphabet"], coder)
                bits = 8 * len(data) / symbols.size
                row[f"{coder}_bits"] = round(bits, 4)
                row[f"{coder}_bits_with_table"] = round(8 * (len(data) + table_bytes(meta["table"])) / symbols.size, 4)
                row[f"{coder}_over_entropy_pct"] = round(100 * (bits / h - 1), 2) if h else None
            print(json.dumps(row), flush=True)
        dec = TensorDecoder(r)
        for i, e in enumerate(r.header["tensors"]):
            if e.get("encoding") != "shared":
                continue
            d = dec.decode(e, i)
            codes = np.zeros(d.info.numel, np.uint16)
            positions, kept, codebook = d.nonzeros()
            codes[positions] = kept
            grid = codes.reshape(grid_shape(d.info.shape))
            in_file = sum(r.streams[e[k]]["length"] for k in ("values", "gaps", "rows", "cols") if k in e)
            t, data = best_time(lambda: context.encode(grid, codebook.size), 1)  # noqa: B023 (called here)
            t_dec, out = best_time(lambda: context.decode(data, *grid.shape, codebook.size), 3)  # noqa: B023
            assert np.array_equal(out, grid)
            print(json.dumps({"file": path.name, "layer": e["name"], "positions_in_file": e["positions"],
                              "bytes_in_file": in_file, "context_bytes_whole_matrix": len(data),
                              "context_decode_Mpos_s": round(grid.size / t_dec / 1e6, 1),
                              **context_bounds(grid, kept, codebook.size, len(data))}), flush=True)


def context_bounds(grid: np.ndarray, kept: np.ndarray, alphabet: int, coded: int) -> dict:
    """Where the context coder's bytes for one layer go, against two bounds that no adaptive coder
    reaches: its positions alone (every kept code set to 1), against the binary entropy at the
    layer's density and a rank-1 logistic model of kept-or-not (a parameter per row and per
    column, fitted to the very matrix and stored for free); its codes (the rest), without and
    with left contexts, against their zeroth-order entropy. `coded`: the layer's context-coded bytes."""
    import torch

    from deepzip.encode import context

    mask = grid != 0
    positions = len(context.encode(mask.astype(np.uint8), 2))
    d = mask.mean()
    iid = 0.0 if d in (0, 1) else grid.size * -(d * np.log2(d) + (1 - d) * np.log2(1 - d)) / 8
    y = torch.from_numpy(mask.astype(np.float32))
    row = torch.zeros(grid.shape[0], 1, requires_grad=True)
    col = torch.zeros(1, grid.shape[1], requires_grad=True)
    opt = torch.optim.LBFGS([row, col], max_iter=300)

    def nats():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(row + col, y, reduction="sum")
        loss.backward()
        return loss

    opt.step(nats)
    rank1 = nats().item() / np.log(2) / 8
    return {"positions_bytes": positions, "positions_iid_entropy_bytes": round(iid),
            "positions_rank1_bound_bytes": round(rank1),
            "codes_bytes": coded - positions,
            "codes_bytes_left_contexts": len(context.encode(grid, alphabet, True)) - positions,
            "codes_order0_entropy_bytes": round(kept.size * entropy(kept.astype(np.int64)) / 8)}


def context_matrix(seed: int) -> None:
    """The context coder on a 4096 × 4096 layer, 7.5 % kept, 5-bit codes crowding around zero:
    decode speed in M weights (positions) per second, and bytes against ANS on its gaps and codes."""
    from deepzip.encode import context
    from deepzip.encode.sparse import to_gaps

    rng = np.random.default_rng(seed)
    codes = np.clip(np.round(rng.laplace(16, 3.0, (4096, 4096))), 1, 31).astype(np.uint8)
    grid = np.where(rng.random((4096, 4096)) < 0.075, codes, 0).astype(np.uint8)
    context.decode(context.encode(grid[:64], 32), 64, 4096, 32)  # warm-up: compilation
    t_enc, data = best_time(lambda: context.encode(grid, 32), 2)
    t_dec, out = best_time(lambda: context.decode(data, 4096, 4096, 32), 3)
    assert np.array_equal(out, grid)
    gaps, values = to_gaps(grid.reshape(-1), 8)
    ans_bytes = sum(len(deepzip_ans(s, a)[0]()) for s, a in ((gaps.astype(np.int32), 256), (values.astype(np.int32), 32)))
    print(json.dumps({"stream": "4096x4096 layer, 7.5 % kept, 5-bit", "coder": "deepzip context", "weights": grid.size,
                      "encode_Mweights_s": round(grid.size / t_enc / 1e6, 1),
                      "decode_Mweights_s": round(grid.size / t_dec / 1e6, 1),
                      "decode_Mkept_s": round(int((grid != 0).sum()) / t_dec / 1e6, 2),
                      "bytes": len(data), "ans_gaps_and_codes_bytes": ans_bytes}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dzip", type=Path, nargs="*", default=[Path("out/lenet300/model.dzip")],
                        help="compressed models whose streams to report (skipped when absent)")
    parser.add_argument("--large", action=argparse.BooleanOptionalAction, default=True,
                        help="also time save/load of a VGG-16-sized model (bench/large_model.py)")
    args = parser.parse_args()
    print(json.dumps({"machine": platform.processor() or platform.machine(), "python": platform.python_version(),
                      "numpy": np.__version__, "n": args.n}))
    for stream, (symbols, alphabet) in streams(args.n, args.seed).items():
        h = entropy(symbols)
        for name, make in CODERS.items():
            encode, decode, expected, repeats = make(symbols, alphabet)
            decode(encode())  # warm-up: JIT compilation and first-touch page faults
            t_enc, data = best_time(encode, repeats)
            t_dec, out = best_time(lambda: decode(data), repeats)  # noqa: B023 (called here)
            assert np.array_equal(np.asarray(out), expected), f"{name} did not round-trip {stream}"
            bits = 8 * len(data) / len(expected)
            print(json.dumps({"stream": stream, "coder": name, "symbols": len(expected),
                              "encode_Msym_s": round(len(expected) / t_enc / 1e6, 2),
                              "decode_Msym_s": round(len(expected) / t_dec / 1e6, 2),
                              "bits_per_symbol": round(bits, 4), "entropy_bits": round(h, 4),
                              "over_entropy_pct": round(100 * (bits / h - 1), 2)}), flush=True)
    context_matrix(args.seed)
    for path in args.dzip:
        if path.exists():
            dzip_streams(path)
    if args.large:
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([sys.executable, str(Path(__file__).with_name("large_model.py")), "--dir", tmp, "--keep"],
                           check=True)
            dzip_streams(Path(tmp) / "vgg16-size-huffman.dzip")


if __name__ == "__main__":
    main()
