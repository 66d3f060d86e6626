"""Direct (one-shot) against iterative pruning of DenseNet-BC on Fashion-MNIST at 32×32.

    python bench/direct_vs_iterative.py [--depth 22] [--limit 6000] [--points 0.3 0.5 0.7 0.9]

One dense DenseNet-BC is trained (depth 100 and growth 12 where a GPU makes that affordable; a
shallower depth on a CPU), then for each target sparsity two runs start from it with the same
budget: "direct" prunes to the target at once and retrains for the whole budget; "iterative"
prunes along the cubic ramp in rounds, retraining after each. Both then share weights (8-bit
conv, 5-bit fc), fine-tune the centroids for one epoch and write a .dzip; every accuracy is
read back from the file. Each run keeps its report.html; the curves go to one plot. Prints one
JSON line a run, then a verdict line.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from _runs import finished

import deepzip as dz
from deepzip.files import atomic_path, write_text
from deepzip.pipeline import from_dict, run_recipe


def recipe(args, **changes) -> dz.pipeline.Recipe:
    base = {"model": "densenet100", "model_args": {"depth": args.depth, "growth": args.growth},
            "dataset": "fashion-mnist", "image_size": 32, "seed": args.seed, "coder": "auto", "index_bits": "auto",
            "dense": {"epochs": args.dense_epochs, "lr": 2e-3}, "prune": None, "share": None}
    return from_dict({**base, **changes})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depth", type=int, default=22)
    ap.add_argument("--growth", type=int, default=12)
    ap.add_argument("--limit", type=int, default=6000, help="samples per split (default: 6,000 on a CPU)")
    ap.add_argument("--dense-epochs", type=float, default=8)
    ap.add_argument("--budget", type=float, default=3, help="retraining epochs after pruning, for both schedules")
    ap.add_argument("--points", type=float, nargs="+", default=[0.3, 0.5, 0.7, 0.9])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", type=Path, default=Path("bench/out/direct_vs_iterative"))
    args = ap.parse_args()
    quiet = dict(limit=args.limit, progress=False, device=args.device, log=lambda *a: print(*a, file=sys.stderr))
    dense_dir = args.out / "dense"
    dense = finished(dense_dir) or run_recipe(recipe(args), dense_dir, resume=True, **quiet)
    print(json.dumps({"run": "dense", "accuracy": dense["accuracy"]["dense"], "parameters": dense["dense_bytes"] // 4}),
          flush=True)
    rows = []
    for target in args.points:
        for schedule in ("direct", "iterative"):
            r = recipe(args, prune={"sparsity": {"conv": target, "linear": target}, "schedule": schedule, "steps": 3,
                                    "retrain": {"epochs": args.budget / 3, "lr": 1e-3}},
                       share={"bits": {"conv": 8, "linear": 5}, "finetune": {"epochs": 1, "lr": 1e-4}})
            run_dir = args.out / f"{schedule}-{round(100 * target)}"
            row = {"run": schedule, "target": target}
            try:
                report = finished(run_dir) or run_recipe(r, run_dir, from_checkpoint=dense_dir / "dense.safetensors",
                                                       resume=True, **quiet)
                row.update(accuracy=report["accuracy"]["from_file"], pruned=report["accuracy"]["pruned"],
                           ratio=report["ratio"], sparsity=report["sparsity"], file_bytes=report["file_bytes"])
            except dz.TrainingError as e:  # the run stopped at chance: that is the result
                row.update(accuracy=None, stopped=str(e))
            rows.append(row)
            print(json.dumps(row), flush=True)
    result = {"dense": dense["accuracy"]["dense"], "depth": args.depth, "growth": args.growth, "limit": args.limit,
              "budget": args.budget, "rows": rows}
    write_text(args.out / "direct_vs_iterative.json", json.dumps(result, indent=1))
    plot(result, args.out / "direct_vs_iterative.png")
    gaps = [(t, i["accuracy"] - d["accuracy"]) for t in args.points
            for d, i in [[next(r for r in rows if r["run"] == s and r["target"] == t) for s in ("direct", "iterative")]]
            if d["accuracy"] is not None and i["accuracy"] is not None]
    print(json.dumps({"run": "verdict", "iterative_minus_direct_points": {f"{round(100 * t)}%": round(g, 2) for t, g in gaps}}))


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4))
    for schedule, color in (("direct", "#c0392b"), ("iterative", "#2e86c1")):
        pts = [r for r in result["rows"] if r["run"] == schedule and r["accuracy"] is not None]
        ax.plot([100 * r["sparsity"] for r in pts], [r["accuracy"] for r in pts], marker="o", color=color,
                label=f"{schedule} + weight sharing")
        for r in pts:
            ax.annotate(f"{r['ratio']:.0f}×", (100 * r["sparsity"], r["accuracy"]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points", color=color)
    ax.axhline(result["dense"], color="gray", ls="--", lw=1, label="dense")
    ax.set_xlabel("sparsity (%)")
    ax.set_ylabel("accuracy from the file (%)")
    ax.set_title(f"DenseNet-BC-{result['depth']} (k={result['growth']}), Fashion-MNIST 32×32, "
                 f"{result['limit']:,} images", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


if __name__ == "__main__":
    main()
