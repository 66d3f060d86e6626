"""GGUF's quants (llama.cpp) beside deepzip's files, on bench/ptq.py's test samples and token ids:
all-MiniLM-L6-v2 scored by the mean cosine with the float PyTorch model's embeddings, SmolLM2-135M
(`--model smollm2`) by the perplexity rise over the float model on the 256 test windows.

llama.cpp runs through llama-cpp-python, whose sdist compiles llama.cpp (tens of minutes on two
cores), so it lives in an environment of its own, built once and never in CI:

    python3 -m venv /work/llama-venv && /work/llama-venv/bin/pip install llama-cpp-python numpy
    # the converter ships in the sdist: pip download llama-cpp-python --no-binary :all: --no-deps;
    # it runs in deepzip's environment and, for a Llama-family model, imports sentencepiece:
    .venv/bin/pip install sentencepiece
    .venv/bin/python bench/gguf_peer.py --export out/bench-gguf --converter SDIST/vendor/llama.cpp
    /work/llama-venv/bin/python bench/gguf_peer.py --quantize out/bench-gguf
    .venv/bin/python bench/gguf_peer.py --score out/bench-gguf [--json docs/data/ptq.jsonl]
    (each with --model smollm2 and its own directory for SmolLM2-135M)

--export writes the float32 GGUF (llama.cpp's own converter), the test split's token ids and
the float model's outputs on them (embeddings; per-window mean token losses); --quantize makes
Q8_0, Q5_K_M, Q4_K_M and Q3_K_M with llama.cpp's quantizer and runs the same token ids through
each file (and the float32 one, which must match PyTorch); --score prints bench/ptq.py's JSON
lines (bytes: the .gguf file's, which holds the tokenizer's vocabulary too).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

TYPES = ("Q8_0", "Q5_K_M", "Q4_K_M", "Q3_K_M")


def export(out: Path, converter: Path, model: str) -> None:
    """The float32 GGUF, the test ids and the float model's outputs (deepzip's environment)."""
    import torch

    sys.path.insert(0, str(Path(__file__).parent))
    import ptq

    out.mkdir(parents=True, exist_ok=True)
    _, base, calib, val, test, metric, _ = (ptq.minilm if model == "minilm" else ptq.smollm2)(Path("out/bench-ptq"))
    with torch.no_grad():
        if model == "minilm":
            ids = [[int(t) for t in row if t != 0] for row in test.x]  # BERT pads with 0: the real tokens
            ref = torch.cat([base(test.x[i:i + 64]) for i in range(0, len(test.x), 64)])
        else:
            ids = test.x.tolist()
            np.save(out / "targets.npy", test.y.numpy())
            ref = torch.cat([window_losses(base(test.x[i:i + 8]).transpose(1, 2), test.y[i:i + 8])
                             for i in range(0, len(test.x), 8)])
    (out / "test_ids.json").write_text(json.dumps(ids))
    np.save(out / "reference.npy", ref.numpy())
    model_dir = _plain((ptq.minilm_dir if model == "minilm" else ptq.smollm2_dir)(Path("out/bench-ptq") / "models"),
                       out / "hf")
    env = {**os.environ, "PYTHONPATH": f"{converter / 'gguf-py'}{os.pathsep}{converter}"}
    subprocess.run([sys.executable, str(converter / "convert_hf_to_gguf.py"), str(model_dir), "--outtype", "f32",
                    "--outfile", str(out / "F32.gguf")], check=True, env=env)


def _plain(model_dir: Path, into: Path) -> Path:
    """The model directory as the converter reads it: SmolLM2's float32 directory still records the
    GGUF it was dequantized from (quantization_config), which the converter refuses; a folder of
    links with that key dropped from config.json."""
    config = json.loads((model_dir / "config.json").read_text())
    if "quantization_config" not in config:
        return model_dir
    into.mkdir(parents=True, exist_ok=True)
    for f in model_dir.iterdir():
        if f.name != "config.json" and not (into / f.name).exists():
            (into / f.name).symlink_to(f.resolve())
    config.pop("quantization_config")
    (into / "config.json").write_text(json.dumps(config, indent=1))
    return into


def window_losses(logits, targets):
    """Each window's mean token loss (float64), from N × T × V logits (torch or numpy)."""
    import torch

    logits = torch.as_tensor(logits).double()
    nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), torch.as_tensor(targets).reshape(-1),
                                            reduction="none")
    return nll.reshape(len(logits), -1).mean(1)


def run(path: Path, ids: list[list[int]], out: Path) -> np.ndarray:
    """llama.cpp on the given ids (not its own tokenization): each list's embedding (an encoder),
    or each window's mean token loss against out/targets.npy (a causal LM)."""
    from llama_cpp import Llama

    causal = (out / "targets.npy").is_file()
    llm = Llama(model_path=str(path), embedding=not causal, logits_all=causal, n_ctx=512, n_batch=512, n_ubatch=512,
                n_threads=2, verbose=False)
    if not causal:
        lookup = {str(i).encode(): row for i, row in enumerate(ids)}
        llm.tokenize = lambda text, add_bos=True, special=False: list(lookup[text])  # noqa: ARG005 (the ids given)
        return np.asarray([llm.embed(str(i)) for i in range(len(ids))], np.float32)
    targets, losses = np.load(out / "targets.npy"), []
    for row, y in zip(ids, targets):
        llm.reset()
        llm.eval(row)
        logits = np.asarray(llm.scores[:len(row)], np.float64)
        top = logits.max(1, keepdims=True)
        logp = logits - top - np.log(np.exp(logits - top).sum(1, keepdims=True))
        losses.append(-logp[np.arange(len(y)), y].mean())
    return np.asarray(losses)


def quantize(out: Path) -> None:
    """Quantize with llama.cpp and embed the test ids with every file (llama.cpp's environment)."""
    import llama_cpp

    ids = json.loads((out / "test_ids.json").read_text())
    sizes = {}
    for kind in ("F32", *TYPES):
        path = out / f"{kind}.gguf"
        t0 = time.perf_counter()
        if kind != "F32":
            params = llama_cpp.llama_model_quantize_default_params()
            params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{kind}")
            params.nthread = 1
            rc = llama_cpp.llama_model_quantize(str(out / "F32.gguf").encode(), str(path).encode(), params)
            assert rc == 0, f"llama_model_quantize {kind} returned {rc}"
        quantized = time.perf_counter() - t0
        np.save(out / f"{kind}.npy", run(path, ids, out))
        sizes[kind] = {"bytes": path.stat().st_size, "quantize_s": round(quantized, 1),
                       "embed_s": round(time.perf_counter() - t0 - quantized, 1)}
        print(kind, sizes[kind], flush=True)
    (out / "sizes.json").write_text(json.dumps({"llama_cpp": llama_cpp.__version__, **sizes}, indent=1))


def score(out: Path, json_path: str | None, model: str) -> None:
    """bench/ptq.py's JSON lines for each GGUF file (deepzip's environment)."""
    import torch

    sys.path.insert(0, str(Path(__file__).parent))
    import ptq

    from deepzip.train.metrics import _spread

    name, base, *_ = (ptq.minilm if model == "minilm" else ptq.smollm2)(Path("out/bench-ptq"))
    dense = 4 * sum(p.numel() for p in base.parameters())
    weights = sum(p.numel() for p in ptq.weight_matrices(base))
    other = 4 * sum(p.numel() for p in base.parameters() if p.dim() < 2)
    ref = torch.from_numpy(np.load(out / "reference.npy")).double()
    sizes = json.loads((out / "sizes.json").read_text())
    lines = []
    for kind in ("F32", *TYPES):
        got = torch.from_numpy(np.load(out / f"{kind}.npy")).double()
        if model == "minilm":
            lost = 1 - torch.nn.functional.cosine_similarity(ref, got, dim=1)
            fid, metric = (float(lost.mean()), _spread(lost)), "cosine"
        else:  # as Perplexity.paired: the rise of exp(mean loss difference), its s.e. over windows
            d = got - ref
            rise = float(torch.exp(d.mean()))
            fid, metric = (100 * (rise - 1), 100 * rise * _spread(d)), "perplexity"
        s = sizes[kind]
        method = f"GGUF {kind} (llama.cpp {sizes['llama_cpp']}, llama_model_quantize)" if kind != "F32" \
            else f"GGUF F32 (llama.cpp {sizes['llama_cpp']}: its converter, unquantized)"
        lines.append(ptq.row(name, method, s["bytes"], dense, weights, other, metric, fid,
                             s["quantize_s"] + s["embed_s"]))
        print(json.dumps(lines[-1]), flush=True)
    if json_path:
        with open(json_path, "a") as f:
            f.writelines(json.dumps(line) + "\n" for line in lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--export", type=Path)
    ap.add_argument("--converter", type=Path, help="llama.cpp's source folder (vendor/llama.cpp of the sdist)")
    ap.add_argument("--quantize", type=Path)
    ap.add_argument("--score", type=Path)
    ap.add_argument("--json", default=None)
    ap.add_argument("--model", choices=["minilm", "smollm2"], default="minilm")
    args = ap.parse_args()
    if args.export:
        export(args.export, args.converter, args.model)
    if args.quantize:
        quantize(args.quantize)
    if args.score:
        score(args.score, args.json, args.model)


if __name__ == "__main__":
    main()
