"""The lookup-table kernels on a GPU against PyTorch's dense float16 and bfloat16 (cuBLAS).

    python bench/gpu.py [--json out.jsonl] [--dzip out/ptq-smollm2/model.dzip | --standin] [--check]

One JSON object per line, everything timed in this one process:
  - the card: its name, and its copy bandwidth (a 2 GiB device-to-device copy, read + write),
    the ceiling a weight-streaming kernel can reach;
  - a 4096 × 4096 layer at 4 and 3 bits, dense and 90 % pruned, at batch 1, 4, 16 and 64:
    the median and min of each way (Triton's do_bench, the L2 cache flushed between calls, so a
    6 MB weight is read from memory as it is in a real model), the weight bytes each reads, and
    the bandwidth the kernel achieved (weight bytes / median time);
  - with --dzip (a causal LM's .dzip, e.g. SmolLM2-135M from `bench/ptq.py --model smollm2`):
    tokens per second generating 128 tokens greedily after a 128-token prompt, through the
    model's own `generate`: deepzip's codebook runtime in float16 against the same weights
    dense in float16 and bfloat16. --standin builds a model of SmolLM2-135M's shapes with random
    weights and rounds it as bench/ptq.py's file is rounded (about 4 bits a weight): the speed of
    a product does not depend on the weights' values, and a 70 MB file does not travel to a lent
    GPU machine (64 MiB a call).
--layout-of FILE needs no GPU: how dz.load(FILE, runtime="codebook", device="cuda") lays out
each layer (packed bits or sparse), and the bytes a token's pass reads, against float16.
--check runs the same code on small shapes on the CPU under Triton's interpreter (no GPU): it
proves the script runs, not any speed.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import torch

CHECK = "--check" in sys.argv
if CHECK and not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"  # before triton is imported

import deepzip as dz  # noqa: E402
from deepzip import runtime as rt  # noqa: E402
from deepzip.runtime.codebook import codebook_matrix  # noqa: E402
from deepzip.runtime.timing import call_times_ms  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def timed(fn, reps: int = 100) -> tuple[float, float]:
    """(median, min) milliseconds of fn(): do_bench with the L2 flushed on a GPU, wall time on a CPU."""
    if DEVICE == "cuda":
        import triton.testing

        med, low = triton.testing.do_bench(fn, warmup=25, rep=reps, quantiles=[0.5, 0.0])
        return float(med), float(low)
    times = call_times_ms(fn, reps=3, warmup=1)
    return statistics.median(times), min(times)


def card() -> dict:
    if DEVICE != "cuda":
        return {"case": "card", "device": "cpu (Triton interpreter)", "copy_gb_s": None}
    src = torch.empty(1 << 30, dtype=torch.int16, device="cuda")  # 2 GiB
    dst = torch.empty_like(src)
    med, _ = timed(lambda: dst.copy_(src), reps=50)
    return {"case": "card", "device": torch.cuda.get_device_name(), "copy_gb_s": round(2 * src.nbytes / med / 1e6, 1)}


def layer(n: int, k: int, bits: int, sparsity: float, seed: int = 0):
    """A random n × k weight as codebook codes, in the layout dz.load would pick."""
    rng = np.random.default_rng(seed)
    entries = 1 << bits
    codes = rng.integers(1, entries, (n, k))
    codes[rng.random((n, k)) < sparsity] = 0
    table = np.concatenate([[0.0], np.sort(rng.standard_normal(entries - 1)) * 0.02]).astype(np.float32)
    layout = rt.choose_layout(torch.nn.Linear(k, n), 1 - sparsity, entries, packed_ok=True)
    positions = None if layout == "packed" else np.flatnonzero(codes)
    kept = codes if positions is None else codes.ravel()[positions]
    matrix = codebook_matrix(layout, positions, kept, table, None, n, k).to(DEVICE)
    dense = torch.from_numpy(table[codes]).to(DEVICE)
    return layout, matrix, dense


def layer_rows(shape: int, batches: tuple[int, ...]) -> list[dict]:
    rows = []
    for bits in (4, 3):
        for sparsity in (0.0, 0.9):
            layout, matrix, dense = layer(shape, shape, bits, sparsity)
            for b in batches:
                row = {"case": f"{shape}x{shape}", "bits": bits, "sparsity": sparsity, "layout": layout, "batch": b}
                rows.append({**row, **side_by_side(matrix, dense, b)})
    return rows


def side_by_side(matrix: torch.nn.Module, dense: torch.Tensor, batch: int) -> dict:
    """One layer at one batch: deepzip's kernel, fp16 and bf16 dense, their times and bytes."""
    x = torch.randn(batch, dense.shape[1], device=DEVICE)
    xh, xb, wh, wb = x.half(), x.bfloat16(), dense.half(), dense.bfloat16()
    want = xh.float() @ dense.t()
    got = matrix.mm(xh).float()
    row = {"deepzip_weight_bytes": matrix.resident_bytes(), "fp16_weight_bytes": wh.numel() * 2,
           "max_rel_error": float((got - want).abs().max() / want.abs().max())}
    for name, fn in (("deepzip", lambda: matrix.mm(xh)), ("fp16", lambda: xh @ wh.t()), ("bf16", lambda: xb @ wb.t())):
        med, low = timed(fn)
        row[f"{name}_ms"], row[f"{name}_min_ms"] = round(med, 5), round(low, 5)
    row["speedup_vs_fp16"] = round(row["fp16_ms"] / row["deepzip_ms"], 2)
    row["deepzip_gb_s"] = round(row["deepzip_weight_bytes"] / row["deepzip_ms"] / 1e6, 1)
    return row


def generation(path: str, prompt_tokens: int, new_tokens: int) -> list[dict]:
    """Tokens per second of greedy generation, each way on the same prompt."""
    torch.manual_seed(0)
    ways = {"deepzip_fp16": lambda: dz.load(path, runtime="codebook", device=DEVICE).half(),
            "dense_fp16": lambda: dz.load(path, device=DEVICE).half(),
            "dense_bf16": lambda: dz.load(path, device=DEVICE).bfloat16()}
    rows, outputs = [], {}
    for name, make in ways.items():
        model = make()
        vocab = model.config.vocab_size
        prompt = torch.randint(0, vocab, (1, prompt_tokens), generator=torch.Generator().manual_seed(0)).to(DEVICE)

        def run(n: int, model=model, prompt=prompt):
            with torch.inference_mode():
                return model.generate(prompt, max_new_tokens=n, min_new_tokens=n, do_sample=False)

        sync = torch.cuda.synchronize if DEVICE == "cuda" else (lambda: None)
        full = call_times_ms(lambda: run(new_tokens), reps=3, warmup=1, sync=sync)
        first = call_times_ms(lambda: run(1), reps=3, warmup=1, sync=sync)
        decode_s = (statistics.median(full) - statistics.median(first)) / 1e3
        outputs[name] = run(new_tokens)[0, prompt_tokens:].tolist()
        rows.append({"case": "generate", "way": name, "prompt": prompt_tokens, "new": new_tokens,
                     "weight_bytes": rt.resident_weight_bytes(model),  # packed codes are buffers too
                     "prefill_ms": round(statistics.median(first), 2),
                     "decode_tokens_per_s": round((new_tokens - 1) / max(decode_s, 1e-9), 1)})
        del model
    same = sum(a == b for a, b in zip(outputs["deepzip_fp16"], outputs["dense_fp16"]))
    rows.append({"case": "generate", "way": "agreement", "greedy_tokens_equal_to_dense_fp16": same, "of": new_tokens})
    return rows


# SmolLM2-135M(-Instruct)'s config.json, the numbers that set its shapes.
SMOLLM2 = dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
               num_key_value_heads=3, vocab_size=49152, max_position_embeddings=8192, rope_theta=100000.0,
               rms_norm_eps=1e-5, tie_word_embeddings=True, bos_token_id=1, eos_token_id=2)


def standin(path: str, small: bool) -> str:
    """A Llama of SmolLM2-135M's shapes (tiny with `small`), random weights, rounded to per-row grids."""
    import transformers

    from deepzip.models.hf import load_hf_dir
    from deepzip.quantize import quantize_pretrained_

    shapes = dict(SMOLLM2, num_hidden_layers=2, hidden_size=64, intermediate_size=96, num_attention_heads=4,
                  num_key_value_heads=2, vocab_size=50, max_position_embeddings=64) if small else SMOLLM2
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        transformers.LlamaForCausalLM(transformers.LlamaConfig(**shapes)).eval().save_pretrained(tmp)
        model = load_hf_dir(tmp)
    bits = quantize_pretrained_(model, None, 0.35)  # ≈ 4.2 bits a weight, as the real file's
    dz.save(model, path)
    print(json.dumps({"case": "standin", "shapes": shapes, "estimated_bits": round(sum(bits.values()) / max(
        1, sum(p.numel() for p in model.parameters() if p.dim() == 2)), 2)}), flush=True)
    return path


def layout_of(path: str) -> dict:
    """The GPU layout of every codebook layer of a file, and the bytes it keeps, without a GPU."""
    os.environ["TRITON_INTERPRET"] = "1"  # the layout the kernels would get; nothing runs
    model = dz.load(path, runtime="codebook")
    layers = [m for m in model.modules() if isinstance(m, (rt.CodebookLinear, rt.CodebookConv2d))]
    bits = [m.weight.bits for m in layers if isinstance(m.weight, rt.PackedMatrix)]
    coded = sum(m.weight.nnz if isinstance(m.weight, rt.PackedMatrix) else m.in_features * m.out_features
                for m in layers)
    return {"case": "layout", "file": path, "file_bytes": os.path.getsize(path), "codebook_layers": len(layers),
            "packed": len(bits), "packed_bits": {b: bits.count(b) for b in sorted(set(bits))},
            "codebook_layer_bytes": sum(m.weight.resident_bytes() for m in layers),
            "codebook_layer_fp16_bytes": 2 * coded, "all_weight_bytes": rt.resident_weight_bytes(model),
            "all_fp16_bytes": 2 * sum(t.numel() for t in dz.load(path).state_dict().values())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", help="also append the rows to this file")
    ap.add_argument("--dzip", help="a causal language model's .dzip to generate with")
    ap.add_argument("--standin", action="store_true", help="generate with SmolLM2-135M's shapes, random weights")
    ap.add_argument("--check", action="store_true", help="small shapes on the CPU under Triton's interpreter")
    ap.add_argument("--layout-of", help="only report how this file's layers would be laid out on a GPU")
    args = ap.parse_args()
    if args.layout_of:
        print(json.dumps(layout_of(args.layout_of)))
        return
    if DEVICE != "cuda" and not args.check:
        sys.exit("error: no GPU here; run with --check to try the script on the CPU.")
    shape, batches = (96, (1, 5)) if args.check else (4096, (1, 4, 16, 64))
    rows = [card(), *layer_rows(shape, batches)]
    path = standin(os.path.join(tempfile.gettempdir(), "deepzip-standin.dzip"), args.check) if args.standin else args.dzip
    if path:
        rows += generation(path, 8 if args.check else 128, 4 if args.check else 128)
    stamp = {"when": time.strftime("%Y-%m-%d"), "torch": torch.__version__}
    for row in rows:
        line = json.dumps({**row, **stamp})
        print(line, flush=True)
        if args.json:
            with open(args.json, "a") as f:
                f.write(line + "\n")


if __name__ == "__main__":
    main()
