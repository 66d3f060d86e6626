"""Decode speed of libdzip (the C reader) against deepzip's Python reader, on the same files.

    python bench/large_model.py --dir /tmp/vgg --keep --no-compress   # writes VGG-16-sized files
    python bench/libdzip_speed.py /tmp/vgg/*.dzip

Per file, one JSON line: the Python reader's seconds to decode every tensor dense (TensorDecoder,
the work read_tensors does, numba kernels warmed up on a first pass) and libdzip's CPU seconds
for the same (dzip-dump --bench: open with its crc32, then dz_decode_dense of every tensor), and
the C reader's time to walk every kept list with its iterator. One thread each.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DUMP = ROOT / "libdzip" / "build" / "dzip-dump"


def python_seconds(path: str) -> float:
    from deepzip.dzip import DzipReader, TensorDecoder

    best = float("inf")
    for _ in range(2):  # the first pass compiles or loads the numba kernels
        start = time.perf_counter()
        with DzipReader(path) as r:
            dec = TensorDecoder(r)
            for i, e in enumerate(r.header["tensors"]):
                if "alias" not in e:
                    dec.decode(e, i).dense()
        best = min(best, time.perf_counter() - start)
    return best


def main(paths: list[str]) -> None:
    torch.set_num_threads(1)
    subprocess.run(["make", "-s", "-C", str(ROOT / "libdzip")], check=True)
    for path in paths:
        c = json.loads(subprocess.run([str(DUMP), "--bench", path], capture_output=True, check=True, text=True).stdout)
        py = python_seconds(path)
        c_total = c["open_s"] + c["dense_s"]
        print(json.dumps({"file": Path(path).name, "bytes": Path(path).stat().st_size, "weights": c["elements"],
                          "python_s": round(py, 3), "c_s": round(c_total, 3), "speedup": round(py / c_total, 1),
                          "c_kept_walk_s": round(c["kept_s"], 3)}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
