"""GGUF's quants (llama.cpp) of all-MiniLM-L6-v2 beside deepzip's files, on bench/ptq.py's test
sentences: the same token ids, scored by the mean cosine with the float PyTorch model's embeddings.

llama.cpp runs through llama-cpp-python, whose sdist compiles llama.cpp (tens of minutes on two
cores), so it lives in an environment of its own, built once and never in CI:

    python3 -m venv /work/llama-venv && /work/llama-venv/bin/pip install llama-cpp-python numpy
    # the converter ships in the sdist: pip download llama-cpp-python --no-binary :all: --no-deps
    .venv/bin/python bench/gguf_peer.py --export out/bench-gguf --converter SDIST/vendor/llama.cpp
    /work/llama-venv/bin/python bench/gguf_peer.py --quantize out/bench-gguf
    .venv/bin/python bench/gguf_peer.py --score out/bench-gguf [--json docs/data/ptq.jsonl]

--export writes the float32 GGUF (llama.cpp's own converter), the test split's token ids and
the float model's embeddings of them; --quantize makes Q8_0, Q5_K_M, Q4_K_M and Q3_K_M with
llama.cpp's quantizer and embeds the same token ids with each file (and the float32 one, which
must match PyTorch), mean pooling as the model's config says; --score prints bench/ptq.py's JSON
lines (bytes: the .gguf file's, which holds the tokenizer's vocabulary too: its size is said).
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


def export(out: Path, converter: Path) -> None:
    """The float32 GGUF, the test ids and the float model's embeddings (deepzip's environment)."""
    import torch

    sys.path.insert(0, str(Path(__file__).parent))
    import ptq

    out.mkdir(parents=True, exist_ok=True)
    name, base, calib, val, test, metric, _ = ptq.minilm(Path("out/bench-ptq"))
    ids = [[int(t) for t in row if t != 0] for row in test.x]  # BERT pads with 0: the real tokens
    (out / "test_ids.json").write_text(json.dumps(ids))
    with torch.no_grad():
        np.save(out / "reference.npy", torch.cat([base(test.x[i:i + 64]) for i in range(0, len(test.x), 64)]).numpy())
    model_dir = ptq.minilm_dir(Path("out/bench-ptq") / "models")
    env = {**os.environ, "PYTHONPATH": f"{converter / 'gguf-py'}{os.pathsep}{converter}"}
    subprocess.run([sys.executable, str(converter / "convert_hf_to_gguf.py"), str(model_dir), "--outtype", "f32",
                    "--outfile", str(out / "F32.gguf")], check=True, env=env)


def embed(path: Path, ids: list[list[int]]) -> np.ndarray:
    """Each token list's embedding by llama.cpp (the given ids, not its own tokenization)."""
    from llama_cpp import Llama

    llm = Llama(model_path=str(path), embedding=True, n_ctx=512, n_batch=512, n_ubatch=512, n_threads=1,
                verbose=False)
    lookup = {str(i).encode(): row for i, row in enumerate(ids)}
    llm.tokenize = lambda text, add_bos=True, special=False: list(lookup[text])  # noqa: ARG005 (the ids given)
    return np.asarray([llm.embed(str(i)) for i in range(len(ids))], np.float32)


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
        np.save(out / f"{kind}.npy", embed(path, ids))
        sizes[kind] = {"bytes": path.stat().st_size, "quantize_s": round(quantized, 1),
                       "embed_s": round(time.perf_counter() - t0 - quantized, 1)}
        print(kind, sizes[kind], flush=True)
    (out / "sizes.json").write_text(json.dumps({"llama_cpp": llama_cpp.__version__, **sizes}, indent=1))


def score(out: Path, json_path: str | None) -> None:
    """bench/ptq.py's JSON lines for each GGUF file (deepzip's environment)."""
    import torch

    sys.path.insert(0, str(Path(__file__).parent))
    import ptq

    _, base, *_ = ptq.minilm(Path("out/bench-ptq"))
    dense = 4 * sum(p.numel() for p in base.parameters())
    weights = sum(p.numel() for p in ptq.weight_matrices(base))
    other = 4 * sum(p.numel() for p in base.parameters() if p.dim() < 2)
    ref = torch.from_numpy(np.load(out / "reference.npy")).double()
    sizes = json.loads((out / "sizes.json").read_text())
    lines = []
    for kind in ("F32", *TYPES):
        got = torch.from_numpy(np.load(out / f"{kind}.npy")).double()
        lost = 1 - torch.nn.functional.cosine_similarity(ref, got, dim=1)
        fid = (float(lost.mean()), float(lost.std() / len(lost) ** 0.5))
        s = sizes[kind]
        method = f"GGUF {kind} (llama.cpp {sizes['llama_cpp']}, llama_model_quantize)" if kind != "F32" \
            else f"GGUF F32 (llama.cpp {sizes['llama_cpp']}: its converter, unquantized)"
        lines.append(ptq.row("all-MiniLM-L6-v2", method, s["bytes"], dense, weights, other, "cosine", fid,
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
    args = ap.parse_args()
    if args.export:
        export(args.export, args.converter)
    if args.quantize:
        quantize(args.quantize)
    if args.score:
        score(args.score, args.json)


if __name__ == "__main__":
    main()
