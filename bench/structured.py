"""Channel surgery on a CIFAR-style network: size, FLOPs, measured latency and accuracy.

    python bench/structured.py [--model resnet18] [--width 0.25] [--limit 6000]

One dense network is trained on Fashion-MNIST at 32×32 (a quarter of the width and 6,000 images
on a CPU; full width and all images where a GPU is available). Then, for each criterion (l1,
apoz, taylor, and knapsack under a parameter budget) and each amount of channels removed (30 /
50 / 70 %), the channels are cut from the dense model and the slim model is fine-tuned; each row
gives its parameters, FLOPs (multiply-adds of the convolutions and Linear layers), accuracy, and
its latency at batch 1 and 64 against the dense model's, timed side by side in this process
(min and median of repeated calls, same threads). The fastest run within 1 point of the dense
accuracy then goes through iterative channel removal (3 rounds, widths per layer plotted), then
unstructured pruning, weight sharing and coding into a .dzip: its bytes and ratio are against
the dense, full-width original. Prints one JSON line a run and a verdict line.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

import deepzip as dz
from deepzip.files import atomic_path, write_text
from deepzip.pipeline import compress, from_dict
from deepzip.report.plots import widths_png
from deepzip.runtime.timing import latencies_ms
from deepzip.structured import costs, trace

from _runs import finished

CRITERIA = ("l1", "apoz", "taylor", "knapsack")


def base(args) -> dict:
    return {"model": args.model, "model_args": {"width": args.width}, "dataset": "fashion-mnist", "image_size": 32,
            "seed": 0, "coder": "auto", "index_bits": "auto", "dense": {"epochs": args.dense_epochs, "lr": 2e-3},
            "prune": None, "share": None}


def channels(criterion: str, amount: float, iterations: int, epochs: float) -> dict:
    stage = {"importance": "l1" if criterion == "knapsack" else criterion, "iterations": iterations,
             "retrain": {"epochs": epochs, "lr": 1e-3}}
    if criterion == "knapsack":  # the parameters a uniform cut of `amount` would keep, chosen where they matter
        stage.update(select="knapsack", amount=None, budget={"params": round((1 - amount) ** 2, 4)})
    else:
        stage.update(amount=amount)
    return stage


def measure(model: torch.nn.Module, dense: torch.nn.Module, reps: int) -> dict:
    x1, x64 = torch.randn(1, 1, 32, 32), torch.randn(64, 1, 32, 32)
    row = {}
    for name, net in (("dense", dense), ("slim", model)):
        for b, x in ((1, x1), (64, x64)):
            times = latencies_ms(net.eval(), x, reps if b == 1 else max(10, reps // 5))
            row[f"b{b}_{name}_ms"], row[f"b{b}_{name}_min_ms"] = round(statistics.median(times), 3), round(min(times), 3)
    row["b1_speedup"] = round(row["b1_dense_ms"] / row["b1_slim_ms"], 2)
    row["b64_speedup"] = round(row["b64_dense_ms"] / row["b64_slim_ms"], 2)
    x = torch.randn(1, 1, 32, 32)
    row["params"] = sum(p.numel() for p in model.parameters())
    row["flops"] = int(costs(trace(model, x), "flops")[1])
    row["dense_flops"] = int(costs(trace(dense, x), "flops")[1])
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--limit", type=int, default=6000)
    ap.add_argument("--dense-epochs", type=float, default=6)
    ap.add_argument("--finetune", type=float, default=2, help="epochs of retraining after the cut")
    ap.add_argument("--final-prune", type=float, default=0.9, help="sparsity of the final run's pruning stage")
    ap.add_argument("--final-epochs", type=float, default=6, help="retraining epochs of the final run's pruning stage")
    ap.add_argument("--amounts", type=float, nargs="+", default=[0.3, 0.5, 0.7])
    ap.add_argument("--criteria", nargs="+", default=list(CRITERIA))
    ap.add_argument("--reps", type=int, default=100)
    ap.add_argument("--out", type=Path, default=Path("bench/out/structured"))
    args = ap.parse_args()
    quiet = dict(limit=args.limit, progress=False, log=lambda *a: print(*a, file=sys.stderr))
    report = finished(args.out / "dense") or compress(from_dict(base(args)), args.out / "dense", resume=True, **quiet)
    checkpoint = args.out / "dense" / "dense.safetensors"
    dense_acc = report["accuracy"]["dense"]
    dense = dz.load(args.out / "dense" / "model.dzip")
    print(json.dumps({"run": "dense", "accuracy": dense_acc, "params": sum(p.numel() for p in dense.parameters()),
                      "threads": torch.get_num_threads()}), flush=True)
    rows = []
    for criterion in args.criteria:
        for amount in args.amounts:
            recipe = from_dict({**base(args), "channels": channels(criterion, amount, 1, args.finetune)})
            try:
                run_dir = args.out / f"{criterion}-{round(100 * amount)}"
                run = finished(run_dir) or compress(recipe, run_dir, from_checkpoint=checkpoint, resume=True, **quiet)
            except dz.TrainingError as e:  # the cut left the model at chance: that is the result
                rows.append({"run": criterion, "amount": amount, "accuracy": None, "stopped": str(e)})
                print(json.dumps(rows[-1]), flush=True)
                continue
            slim = dz.load(args.out / f"{criterion}-{round(100 * amount)}" / "model.dzip")
            row = {"run": criterion, "amount": amount, "accuracy": run["accuracy"]["from_file"],
                   "drop": round(dense_acc - run["accuracy"]["from_file"], 2), **measure(slim, dense, args.reps)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    done = [r for r in rows if r["accuracy"] is not None]
    fit = [r for r in done if r["drop"] <= 1.0]
    # The fastest cut within a point of dense; where the budget left none, the most accurate one.
    best = min(fit, key=lambda r: r["b1_slim_ms"] / r["b1_dense_ms"]) if fit else min(done, key=lambda r: r["drop"])
    recipe = from_dict({**base(args), "channels": channels(best["run"], best["amount"], 3, args.finetune),
                        "prune": {"sparsity": {"conv": args.final_prune, "linear": args.final_prune}, "schedule": "agp",
                                  "steps": 3, "retrain": {"epochs": args.final_epochs, "lr": 1e-3}},
                        "share": {"bits": {"conv": 5, "linear": 5}, "finetune": {"epochs": 1, "lr": 1e-4},
                                  "half_biases": True, "half_codebooks": True},
                        "distill": {"weight": 0.7, "temperature": 2}})
    final_dir = args.out / f"final-{round(100 * args.final_prune)}-{args.final_epochs:g}"
    final = finished(final_dir) or compress(recipe, final_dir, from_checkpoint=checkpoint, resume=True, **quiet)
    history = json.loads((final_dir / "history.json").read_text())
    with atomic_path(args.out / "widths.png") as tmp:
        tmp.write_bytes(widths_png([h for h in history if "widths" in h]))
    last = {"run": "final", "channels": f"{best['run']} {best['amount']}, 3 rounds", "accuracy": final["accuracy"],
            "file_bytes": final["file_bytes"], "ratio": final["ratio"], "dense_bytes": final["dense_bytes"]}
    print(json.dumps(last), flush=True)
    write_text(args.out / "structured.json", json.dumps({"dense": dense_acc, "rows": rows, "final": last}, indent=1))
    print(json.dumps({"run": "verdict", "best_cut": f"{best['run']} {best['amount']}", "b1_speedup": best["b1_speedup"],
                      "drop": best["drop"], "file_ratio": final["ratio"],
                      "file_drop": round(dense_acc - final["accuracy"]["from_file"], 2),
                      "targets": {"2x_at_batch_1_within_1_point": best["b1_speedup"] >= 2 and best["drop"] <= 1,
                                  "file_50x_within_1_point": final["ratio"] >= 50 and
                                  dense_acc - final["accuracy"]["from_file"] <= 1}}), flush=True)


if __name__ == "__main__":
    main()
