"""Distilling a ResNet-18 teacher into a student of a quarter of its parameters, then into a file.

    python bench/distill.py [--teacher-width 0.25] [--limit 6000] [--epochs 6] [--seeds 2]

Fashion-MNIST at 32×32. The teacher is ResNet-18 (at `--teacher-width`: a quarter of full width
on a CPU, full width where a GPU is available); the student the same network at half that width
(a quarter of the parameters). Student rows, each with the same epochs and every seed: from
scratch; + soft targets; + a hint (layer3 → layer3 through a 1×1 regressor); + the adversarial
term (all three parts). Then the best student goes on through pruning, weight sharing and coding:
its file's bytes, its ratio against the dense teacher, and its accuracy read from the file.
Prints one JSON line a run and a verdict line.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from deepzip.files import write_text
from deepzip.pipeline import compress, from_dict

from _runs import finished

ROWS = {  # name: the recipe's distill stage (None: no teacher)
    "scratch": None,
    "soft": {"weights": [1, 0, 0], "alpha": 0.7},
    "soft+hint": {"weights": [1, 0.5, 0], "alpha": 0.7, "hints": {"layer3": "layer3"}},
    "soft+hint+adversarial": {"weights": [1, 0.5, 0.1], "alpha": 0.7, "hints": {"layer3": "layer3"}},
}


def recipe(args, width: float, seed: int, distill: dict | None = None, **changes) -> dict:
    r = {"model": "resnet18", "model_args": {"width": width}, "dataset": "fashion-mnist", "image_size": 32,
         "seed": seed, "coder": "auto", "index_bits": "auto", "dense": {"epochs": args.epochs, "lr": 2e-3},
         "prune": None, "share": None, **changes}
    if distill is not None:
        r["distill"] = {"teacher": str(args.out / "teacher" / "dense.safetensors"), "temperature": 4, "weight": 0.5,
                        **distill}
    return from_dict(r)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher-width", type=float, default=0.25)
    ap.add_argument("--limit", type=int, default=6000)
    ap.add_argument("--epochs", type=float, default=6)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--final-epochs", type=float, default=6,
                    help="retraining epochs of the final run's 90 %% pruning (2 left a quarter-width student at 37 %%)")
    ap.add_argument("--out", type=Path, default=Path("bench/out/distill"))
    args = ap.parse_args()
    quiet = dict(limit=args.limit, progress=False, log=lambda *a: print(*a, file=sys.stderr))
    teacher = compress(recipe(args, args.teacher_width, 0), args.out / "teacher", resume=True, **quiet)
    print(json.dumps({"run": "teacher", "accuracy": teacher["accuracy"]["dense"], "dense_bytes": teacher["dense_bytes"]}),
          flush=True)
    student_width = args.teacher_width / 2
    rows: dict[str, list[float]] = {}
    for name, distill in ROWS.items():
        for seed in range(args.seeds):
            run_dir = args.out / f"{name}-{seed}"
            report = finished(run_dir) or compress(recipe(args, student_width, seed, distill), run_dir, resume=True,
                                                   **quiet)
            rows.setdefault(name, []).append(report["accuracy"]["dense"])
            print(json.dumps({"run": name, "seed": seed, "accuracy": report["accuracy"]["dense"],
                              "student_bytes": report["dense_bytes"]}), flush=True)
    means = {name: statistics.mean(v) for name, v in rows.items()}
    best = max((n for n in ROWS if n != "scratch"), key=means.get)
    final = compress(recipe(args, student_width, 0, ROWS[best],
                            prune={"sparsity": {"conv": 0.9, "linear": 0.9}, "schedule": "agp", "steps": 3,
                                   "retrain": {"epochs": args.final_epochs, "lr": 1e-3}},
                            share={"bits": {"conv": 5, "linear": 5}, "finetune": {"epochs": 1, "lr": 1e-4},
                                   "half_biases": True, "half_codebooks": True}),
                     args.out / f"final-{args.final_epochs:g}", resume=True, **quiet)
    ratio = teacher["dense_bytes"] / final["file_bytes"]
    result = {"teacher": teacher["accuracy"]["dense"], "rows": rows, "means": means, "best": best,
              "final": {"file_bytes": final["file_bytes"], "ratio_vs_teacher": round(ratio, 1),
                        "accuracy": final["accuracy"]["from_file"]}}
    write_text(args.out / "distill.json", json.dumps(result, indent=1))
    print(json.dumps({"run": "final", **result["final"]}), flush=True)
    gain = means["soft+hint+adversarial"] - means["scratch"]
    print(json.dumps({"run": "verdict", "three_part_minus_scratch": round(gain, 2),
                      "targets": {"three_part_beats_scratch_by_1": gain >= 1,
                                  "file_100x_within_1.5_of_teacher": ratio >= 100 and
                                  teacher["accuracy"]["dense"] - final["accuracy"]["from_file"] <= 1.5}}), flush=True)


if __name__ == "__main__":
    main()
