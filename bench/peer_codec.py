"""deepzip's coders against NNCodec (Fraunhofer HHI's MPEG-7 NNR coder, DeepCABAC) on the same weights.

    python bench/peer_codec.py [--files out/lenet300/model.dzip out/best300/model.dzip out/best5/model.dzip]
                               [--nncodec-python /opt/nncodec-venv/bin/python] [--qp -32 -36 -40]

NNCodec lives in its own virtual environment: it pins its own torch and torchvision and is no
dependency of deepzip, nor of its tests. Set-up (about 6 minutes, 1.5 GB; the pins keep pip from
pulling a CUDA torch):

    python3.11 -m venv /opt/nncodec-venv
    /opt/nncodec-venv/bin/pip install torch==2.13.0
    printf 'torch==2.13.0\\ntorchvision==0.28.0\\n' > /tmp/pins.txt
    /opt/nncodec-venv/bin/pip install -c /tmp/pins.txt nncodec==2.1.3

For each .dzip: the weights it holds are written again by deepzip with each coder (dz.recode:
lossless, read back and compared bit for bit), with the file's metadata and without it; then the
same weights go to NNCodec (bench/nncodec_runner.py, run by NNCodec's python): codebook mode at
each qp — lossy, it snaps every weight to a uniform grid first and quantizes biases at its
nonweight qp — and a lossless mode (each tensor as int32 indices plus the float32 bit patterns of
its values). Every reconstruction is evaluated on the 10,000 Fashion-MNIST test images. Prints one
JSON line per (file, coder) and a verdict line per file: deepzip's smallest lossless file against
NNCodec's smallest bitstream at any qp.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import deepzip as dz
from deepzip import data as datasets
from deepzip.train import evaluate

RUNNER = Path(__file__).with_name("nncodec_runner.py")


def load_seconds(path: Path, reps: int = 3) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        dz.load(path)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=Path, nargs="+", default=[Path("out/lenet300/model.dzip"),
                                                            Path("out/best300/model.dzip"), Path("out/best5/model.dzip")])
    ap.add_argument("--nncodec-python", default="/opt/nncodec-venv/bin/python")
    ap.add_argument("--qp", type=int, nargs="+", default=[-32, -36, -40])
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args()
    test = datasets.load("fashion-mnist", args.data_dir, train=False)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for path in args.files:
            if not path.exists():
                print(json.dumps({"file": str(path), "skipped": "no such file: run its compress command first"}))
                continue
            model = dz.load(path)
            acc = evaluate(model, test)
            rows = [{"file": str(path), "coder": "as written", "bytes": path.stat().st_size, "lossless": True,
                     "accuracy": acc, "load_s": round(load_seconds(path), 4)}]
            for coder in ("huffman", "ans", "context", "auto"):
                for keep_meta in (True, False):
                    out = tmp / f"{coder}-{keep_meta}.dzip"
                    start = time.perf_counter()
                    header = dz.recode(path, out, coder=coder, metadata=None if keep_meta else {})
                    rows.append({"file": str(path), "coder": f"deepzip {coder}" + ("" if keep_meta else ", no metadata"),
                                 "bytes": header["file_bytes"], "lossless": True, "accuracy": acc,
                                 "encode_s": round(time.perf_counter() - start, 3), "load_s": round(load_seconds(out), 4)})
            weights = {k: v.detach().numpy() for k, v in model.state_dict().items()}
            np.savez(tmp / "w.npz", **weights)
            run = subprocess.run([args.nncodec_python, str(RUNNER), str(tmp / "w.npz"), str(tmp / "nnc.json"),
                                  "--qp", *map(str, args.qp), "--exact"], capture_output=True, text=True)
            if run.returncode:
                print(json.dumps({"file": str(path), "nncodec": "failed", "stderr": run.stderr[-2000:]}))
            else:
                result = json.loads((tmp / "nnc.json").read_text())
                for qp, r in result["runs"].items():
                    decoded = np.load(tmp / f"nnc.qp{qp}.npz")
                    net = dz.load(path)
                    net.load_state_dict({k: torch.from_numpy(decoded[k]).reshape(weights[k].shape) for k in weights})
                    exact = all(t["bit_identical"] for t in r["tensors"].values())
                    rows.append({"file": str(path), "coder": f"NNCodec {r['label']}", "bytes": r["bytes"],
                                 "lossless": exact, "accuracy": evaluate(net, test), "encode_s": r["encode_s"],
                                 "decode_s": r["decode_s"],
                                 "max_abs_err": max(t["max_abs_err"] for t in r["tensors"].values())})
            for row in rows:
                print(json.dumps(row), flush=True)
            ours = min((r for r in rows if r["coder"].startswith("deepzip")), key=lambda r: r["bytes"])
            theirs = [r for r in rows if r["coder"].startswith("NNCodec")]
            if theirs:
                best = min(theirs, key=lambda r: r["bytes"])
                lossless = [r for r in theirs if r["lossless"]]
                print(json.dumps({"file": str(path), "verdict": {
                    "deepzip_smallest": f"{ours['coder']}: {ours['bytes']} B",
                    "nncodec_smallest": f"{best['coder']}: {best['bytes']} B at {best['accuracy']:.2f} %",
                    "deepzip_smaller_than_nncodec_pct": round(100 * (1 - ours["bytes"] / best["bytes"]), 2),
                    "deepzip_smaller_than_lossless_nncodec_pct":
                        round(100 * (1 - ours["bytes"] / min(r["bytes"] for r in lossless)), 2) if lossless else None,
                    "target_10pct_met": ours["bytes"] <= 0.9 * best["bytes"],
                    "deepzip_load_s_median": statistics.median(r["load_s"] for r in rows if "load_s" in r)}}),
                      flush=True)


if __name__ == "__main__":
    main()
