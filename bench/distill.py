"""Distilling a ResNet-18 teacher into a student of a quarter of its parameters, then into a file.

    python bench/distill.py [--teacher-width 0.25] [--limit 12000] [--epochs 5] [--teacher-limit 30000]
                            [--teacher-epochs 4] [--seeds 2] [--jobs 2]

Fashion-MNIST at 32×32. The teacher is ResNet-18 (at `--teacher-width`: a quarter of full width
on a CPU, full width where a GPU is available), trained `--teacher-epochs` on `--teacher-limit`
images (a teacher is a model someone trained well, often on more than the students get; the
students' budget is what the rows compare); the student is the same
network at half that width (a quarter of the parameters). Student rows, each with the same
`--epochs` on the same data and every seed: from scratch; + soft targets; + a hint (layer3 →
layer3 through a 1×1 regressor); + the adversarial term (all three parts). Then the best row's
seed-0 student (the very checkpoint measured) goes on through pruning (sparsity by depth: the
stem and classifier kept whole, the wide last stage cut hardest), weight sharing and coding,
its retraining still learning from the teacher: its file's bytes, its ratio against the dense
teacher, and its accuracy read from the file. Prints one JSON line a run and a verdict line.
`--jobs 2` runs two student rows at once, one thread each. The final run's retraining uses the
teacher's images (`--final-limit`); `--teacher-limit 12000 --teacher-epochs 12` gives the teacher
exactly the students' images (0: all 60,000).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from _runs import finished

from deepzip.files import write_text
from deepzip.pipeline import from_dict, run_recipe

ROWS = {  # name: the recipe's distill stage (None: no teacher)
    "scratch": None,
    "soft": {"weights": [1, 0, 0], "alpha": 0.7},
    "soft+hint": {"weights": [1, 0.5, 0], "alpha": 0.7, "hints": {"layer3": "layer3"}},
    "soft+hint+adversarial": {"weights": [1, 0.5, 0.1], "alpha": 0.7, "hints": {"layer3": "layer3"}},
}
# Sparsity by depth (prefix of the layer's name). ResNet-18's last stage holds three quarters of
# its weights and tolerates most pruning; the stem (72 weights) and the classifier are where one
# lost weight costs the most accuracy, and the bytes they would save are few.
DEPTH_SPARSITY = {"stem": 0.0, "layer1": 0.5, "layer2": 0.7, "layer3": 0.85, "layer4": 0.95, "fc": 0.0}


def recipe(args, width: float, seed: int, distill: dict | None = None, epochs: float | None = None,
           **changes) -> dict:
    r = {"model": "resnet18", "model_args": {"width": width}, "dataset": "fashion-mnist", "image_size": 32,
         "seed": seed, "coder": "auto", "index_bits": "auto",
         "dense": {"epochs": args.epochs if epochs is None else epochs, "lr": 2e-3},
         "prune": None, "share": None, **changes}
    if distill is not None:
        r["distill"] = {"teacher": str(args.out / "teacher" / "dense.safetensors"), "temperature": 4, "weight": 0.5,
                        **distill}
    return from_dict(r)


def depth_sparsity(width: float) -> dict[str, float]:
    """Each convolution's and linear layer's sparsity, by DEPTH_SPARSITY on its name."""
    import deepzip as dz
    model = dz.create_model("resnet18", in_channels=1, image_size=32, classes=10, width=width)
    names = [n for n, m in model.named_modules() if hasattr(m, "weight") and m.weight.dim() >= 2]
    return {n: DEPTH_SPARSITY[n.split(".")[0]] for n in names if DEPTH_SPARSITY[n.split(".")[0]] > 0}


def student_row(args, name: str, seed: int) -> dict:
    """One student run (in a worker process when --jobs > 1: one thread each)."""
    import torch
    if args.jobs > 1:
        torch.set_num_threads(1)
    run_dir = args.out / f"{name}-{seed}"
    report = finished(run_dir) or run_recipe(recipe(args, args.teacher_width / 2, seed, ROWS[name]), run_dir,
                                           resume=True, limit=args.limit, progress=False,
                                           log=lambda *a: print(f"[{name}-{seed}]", *a, file=sys.stderr))
    return {"run": name, "seed": seed, "accuracy": report["accuracy"]["dense"], "student_bytes": report["dense_bytes"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher-width", type=float, default=0.25)
    ap.add_argument("--limit", type=int, default=12000)
    ap.add_argument("--epochs", type=float, default=5, help="every student row's training")
    ap.add_argument("--teacher-epochs", type=float, default=4)
    ap.add_argument("--teacher-limit", type=int, default=30000,
                    help="the teacher's images (0: all): a teacher is often trained on more than the students get")
    ap.add_argument("--final-limit", type=int, default=None,
                    help="the final run's images, for pruning's retraining (default --teacher-limit)")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--jobs", type=int, default=1, help="student rows run at once (one thread each when > 1)")
    ap.add_argument("--final-epochs", type=float, default=6,
                    help="the final run's pruning and retraining, in epochs (over 3 steps)")
    ap.add_argument("--out", type=Path, default=Path("bench/out/distill"))
    args = ap.parse_args()
    quiet = dict(limit=args.limit, progress=False, log=lambda *a: print(*a, file=sys.stderr))
    teacher_limit = args.teacher_limit or None
    final_limit = teacher_limit if args.final_limit is None else (args.final_limit or None)
    teacher = finished(args.out / "teacher") or run_recipe(
        recipe(args, args.teacher_width, 0, epochs=args.teacher_epochs), args.out / "teacher", resume=True,
        **{**quiet, "limit": teacher_limit})
    print(json.dumps({"run": "teacher", "accuracy": teacher["accuracy"]["dense"], "dense_bytes": teacher["dense_bytes"]}),
          flush=True)
    todo = [(name, seed) for name in ROWS for seed in range(args.seeds)]
    rows: dict[str, list[float]] = {}
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            results = list(pool.map(student_row, [args] * len(todo), *zip(*todo)))
    else:
        results = [student_row(args, name, seed) for name, seed in todo]
    for r in results:
        rows.setdefault(r["run"], []).append(r["accuracy"])
        print(json.dumps(r), flush=True)
    means = {name: statistics.mean(v) for name, v in rows.items()}
    best = max((n for n in ROWS if n != "scratch"), key=means.get)
    steps = 3
    final = run_recipe(recipe(args, args.teacher_width / 2, 0, ROWS[best],
                            prune={"sparsity": depth_sparsity(args.teacher_width / 2), "schedule": "agp",
                                   "every": 10,  # small steps: a jump to 95 % at once breaks the batch norms
                                   "steps": steps, "retrain": {"epochs": args.final_epochs / steps, "lr": 1e-3}},
                            share={"bits": {"conv": 5, "linear": 5}, "finetune": {"epochs": 1, "lr": 1e-4},
                                   "half_biases": True, "half_codebooks": True}),
                     args.out / f"final-{best}-{args.final_epochs:g}", resume=True,
                     from_checkpoint=args.out / f"{best}-0" / "dense.safetensors", **{**quiet, "limit": final_limit})
    ratio = teacher["dense_bytes"] / final["file_bytes"]
    result = {"teacher": teacher["accuracy"]["dense"], "rows": rows, "means": means, "best": best,
              "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
              "final": {"from": f"{best}-0", "student_accuracy": rows[best][0], "sparsity": DEPTH_SPARSITY,
                        "file_bytes": final["file_bytes"], "ratio_vs_teacher": round(ratio, 1),
                        "accuracy": final["accuracy"]["from_file"]}}
    write_text(args.out / "distill.json", json.dumps(result, indent=1))
    print(json.dumps({"run": "final", **result["final"]}), flush=True)
    gain = means["soft+hint+adversarial"] - means["scratch"]
    print(json.dumps({"run": "verdict", "three_part_minus_scratch": round(gain, 2),
                      "teacher_minus_file": round(teacher["accuracy"]["dense"] - final["accuracy"]["from_file"], 2),
                      "targets": {"three_part_beats_scratch_by_1": gain >= 1,
                                  "file_100x_within_1.5_of_teacher": ratio >= 100 and
                                  teacher["accuracy"]["dense"] - final["accuracy"]["from_file"] <= 1.5}}), flush=True)


if __name__ == "__main__":
    main()
