"""Channel surgery on a CIFAR-style network: size, FLOPs, measured latency and accuracy.

    python bench/structured.py [--model resnet18] [--width 0.25] [--limit 4000]

One dense network is trained on Fashion-MNIST at 32×32 (a quarter of the width and 4,000 images
on a CPU; full width and all images where a GPU is available). Then, for each criterion (l1,
apoz, taylor, and knapsack under a parameter budget) and each amount of channels removed (30 /
50 / 70 %), the channels are cut from the dense model (every layer keeping a multiple of
`--round-to` channels) and the slim model is fine-tuned; each row gives its parameters, FLOPs
(multiply-adds of the convolutions and Linear layers), accuracy, and its latency at batch 1 and
64 against the dense model's, timed side by side in this process (min and median of repeated
calls, same threads) in PyTorch's eager mode and in onnxruntime. The fastest run within 1 point
of the dense accuracy (or `--final-criterion` / `--final-amount`) then goes through iterative
channel removal (`--final-rounds`, widths per layer plotted), then unstructured pruning, weight
sharing and coding into a .dzip: its bytes and ratio are against the dense, full-width
original, and the model decoded from it is timed against the dense one. Prints one JSON line a
run and a verdict line.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch
from _runs import finished

import deepzip as dz
from deepzip.export import onnx_runner
from deepzip.files import atomic_path, write_text
from deepzip.pipeline import from_dict, run_recipe
from deepzip.report.plots import widths_png
from deepzip.runtime.timing import call_times_ms
from deepzip.structured import costs, trace

CRITERIA = ("l1", "apoz", "taylor", "knapsack")


def base(args) -> dict:
    return {"model": args.model, "model_args": {"width": args.width}, "dataset": "fashion-mnist", "image_size": 32,
            "seed": 0, "coder": "auto", "index_bits": "auto", "dense": {"epochs": args.dense_epochs, "lr": 2e-3},
            "prune": None, "share": None}


def channels(criterion: str, amount: float, iterations: int, epochs: float, round_to: int = 1) -> dict:
    stage = {"importance": "l1" if criterion == "knapsack" else criterion, "iterations": iterations,
             "retrain": {"epochs": epochs, "lr": 1e-3}}
    if criterion == "knapsack":  # the parameters a uniform cut of `amount` would keep, chosen where they matter
        stage.update(select="knapsack", amount=None, budget={"params": round((1 - amount) ** 2, 4)})
    else:
        stage.update(amount=amount, round_to=round_to)
    return stage


def has_onnxruntime() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def measure(model: torch.nn.Module, dense: torch.nn.Module, reps: int) -> dict:
    """Latencies of the dense and the slim model, in PyTorch (eager) and, where it is installed, in
    onnxruntime (each model exported), on the same threads: min and median of `reps` calls at
    batch 1 (a fifth at batch 64), the two models' calls alternating in blocks of ten so that a
    busy moment of the machine falls on both."""
    x1, x64 = torch.randn(1, 1, 32, 32), torch.randn(64, 1, 32, 32)
    dense, model = dense.eval(), model.eval()
    runners = {"": {"dense": dense, "slim": model}}
    if has_onnxruntime():
        runners["ort_"] = {"dense": onnx_runner(dense, x1), "slim": onnx_runner(model, x1)}
    row = {}
    with torch.inference_mode():
        for rt, pair in runners.items():
            for b, x in ((1, x1), (64, x64)):
                times: dict[str, list[float]] = {"dense": [], "slim": []}
                for block in range(max(1, (reps if b == 1 else max(10, reps // 5)) // 10)):
                    for name, run in pair.items():
                        times[name] += call_times_ms(lambda: run(x), 10, warmup=3 if block == 0 else 0)  # noqa: B023
                for name, ts in times.items():
                    row[f"b{b}_{rt}{name}_ms"] = round(statistics.median(ts), 3)
                    row[f"b{b}_{rt}{name}_min_ms"] = round(min(ts), 3)
                row[f"b{b}_{rt}speedup"] = round(row[f"b{b}_{rt}dense_ms"] / row[f"b{b}_{rt}slim_ms"], 2)
    x = torch.randn(1, 1, 32, 32)
    row["params"] = sum(p.numel() for p in model.parameters())
    row["flops"] = int(costs(trace(model, x), "flops")[1])
    row["dense_flops"] = int(costs(trace(dense, x), "flops")[1])
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--limit", type=int, default=4000)
    ap.add_argument("--dense-epochs", type=float, default=6)
    ap.add_argument("--finetune", type=float, default=2, help="epochs of retraining after the cut")
    ap.add_argument("--final-prune", type=float, default=0.9, help="sparsity of the final run's pruning stage")
    ap.add_argument("--final-epochs", type=float, default=6, help="retraining epochs of the final run's pruning stage")
    ap.add_argument("--amounts", type=float, nargs="+", default=[0.3, 0.5, 0.7])
    ap.add_argument("--criteria", nargs="+", default=list(CRITERIA))
    ap.add_argument("--reps", type=int, default=100)
    ap.add_argument("--round-to", type=int, default=8,
                    help="every layer keeps a multiple of this many channels (1: exactly the amount)")
    ap.add_argument("--final-amount", type=float, default=None,
                    help="the final run's channel cut (default: the fastest single cut within a point)")
    ap.add_argument("--final-criterion", default=None, help="the final run's criterion (default: that cut's)")
    ap.add_argument("--final-rounds", type=int, default=3)
    ap.add_argument("--no-final", action="store_true", help="only the single cuts (e.g. to compare --round-to)")
    ap.add_argument("--final-finetune", type=float, default=None, help="retraining epochs per round (default --finetune)")
    ap.add_argument("--out", type=Path, default=Path("bench/out/structured"))
    args = ap.parse_args()
    quiet = dict(limit=args.limit, progress=False, log=lambda *a: print(*a, file=sys.stderr))
    report = finished(args.out / "dense") or run_recipe(from_dict(base(args)), args.out / "dense", resume=True, **quiet)
    checkpoint = args.out / "dense" / "dense.safetensors"
    dense_acc = report["accuracy"]["dense"]
    dense = dz.load(args.out / "dense" / "model.dzip")
    print(json.dumps({"run": "dense", "accuracy": dense_acc, "params": sum(p.numel() for p in dense.parameters()),
                      "threads": torch.get_num_threads()}), flush=True)
    rows = []
    for criterion in args.criteria:
        for amount in args.amounts:
            recipe = from_dict({**base(args), "channels": channels(criterion, amount, 1, args.finetune, args.round_to)})
            try:
                run_dir = args.out / (f"{criterion}-{round(100 * amount)}"
                                      + (f"-r{args.round_to}" if args.round_to > 1 and criterion != "knapsack" else ""))
                run = finished(run_dir) or run_recipe(recipe, run_dir, from_checkpoint=checkpoint, resume=True, **quiet)
            except dz.TrainingError as e:  # the cut left the model at chance: that is the result
                rows.append({"run": criterion, "amount": amount, "accuracy": None, "stopped": str(e)})
                print(json.dumps(rows[-1]), flush=True)
                continue
            slim = dz.load(run_dir / "model.dzip")
            row = {"run": criterion, "amount": amount, "round_to": 1 if criterion == "knapsack" else args.round_to,
                   "accuracy": run["accuracy"]["from_file"],
                   "drop": round(dense_acc - run["accuracy"]["from_file"], 2), **measure(slim, dense, args.reps)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.no_final:
        return
    done = [r for r in rows if r["accuracy"] is not None]
    fit = [r for r in done if r["drop"] <= 1.0]
    # The fastest cut within a point of dense; where the budget left none, the most accurate one.
    best = min(fit, key=lambda r: r["b1_slim_ms"] / r["b1_dense_ms"]) if fit else min(done, key=lambda r: r["drop"])
    criterion, amount = args.final_criterion or best["run"], args.final_amount or best["amount"]
    recipe = from_dict({**base(args), "channels": channels(criterion, amount, args.final_rounds,
                                                           args.final_finetune or args.finetune, args.round_to),
                        "prune": {"sparsity": {"conv": args.final_prune, "linear": args.final_prune}, "schedule": "agp",
                                  "steps": 3, "retrain": {"epochs": args.final_epochs, "lr": 1e-3}},
                        "share": {"bits": {"conv": 5, "linear": 5}, "finetune": {"epochs": 1, "lr": 1e-4},
                                  "half_biases": True, "half_codebooks": True},
                        "distill": {"weight": 0.7, "temperature": 2}})
    final_dir = args.out / (f"final-{criterion}-{round(100 * amount)}x{args.final_rounds}-r{args.round_to}"
                            f"-{round(100 * args.final_prune)}-{args.final_epochs:g}")
    final = finished(final_dir) or run_recipe(recipe, final_dir, from_checkpoint=checkpoint, resume=True, **quiet)
    history = json.loads((final_dir / "history.json").read_text())
    with atomic_path(args.out / "widths.png") as tmp:
        tmp.write_bytes(widths_png([h for h in history if "widths" in h]))
    slim = dz.load(final_dir / "model.dzip")  # what a user deploys: the file, decoded to dense slim tensors
    drop = round(dense_acc - final["accuracy"]["from_file"], 2)
    last = {"run": "final", "channels": f"{criterion} {amount}, {args.final_rounds} rounds, round_to {args.round_to}",
            "accuracy": final["accuracy"], "drop": drop, "file_bytes": final["file_bytes"], "ratio": final["ratio"],
            "dense_bytes": final["dense_bytes"], **measure(slim, dense, args.reps)}
    print(json.dumps(last), flush=True)
    write_text(args.out / "structured.json", json.dumps({"dense": dense_acc, "rows": rows, "final": last}, indent=1))
    fast = {rt: last[f"b1_{rt}speedup"] >= 2 and drop <= 1 for rt in ("", "ort_") if f"b1_{rt}speedup" in last}
    print(json.dumps({"run": "verdict", "final_cut": last["channels"], "b1_speedup_eager": last["b1_speedup"],
                      "b1_speedup_onnxruntime": last.get("b1_ort_speedup"), "file_drop": drop,
                      "file_ratio": final["ratio"],
                      "targets": {"2x_at_batch_1_within_1_point": {"eager": fast[""], "onnxruntime": fast.get("ort_")},
                                  "file_50x_within_1_point": final["ratio"] >= 50 and drop <= 1}}), flush=True)

if __name__ == "__main__":
    main()
