"""Recipes as a new user runs them: from scratch (dense stage included), once per seed.

    python bench/seeds.py --recipe recipes/rate-lenet300.yaml [--recipe …] [--seeds 0 1 2 3 4]
        [--out bench/out/seeds] [--limit N] [--drop 0.3]

Each (recipe, seed) is `deepzip.pipeline.run_recipe(load_recipe(R, seed=s), OUT/<recipe>/seed-<s>)`,
what `deepzip compress --recipe R --seed s` runs. Every seed's accuracy is read from its file and
compared with that run's own dense accuracy. Prints one JSON line per run, then per recipe the
ratio (mean, min, max), the accuracy drop (mean, worst) and whether the drop is within --drop
points on every seed (iso-accuracy). A finished run (its report.json exists) is not run again,
so the bench can be stopped and started. Writes OUT/seeds.json.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from _runs import finished

from deepzip.files import write_text
from deepzip.pipeline import load_recipe, run_recipe

BENCH = Path(__file__).resolve().parent


def run_one(recipe_path: Path, seed: int, out: Path, limit: int | None) -> dict:
    report = finished(out)
    if report is None:
        recipe = load_recipe(recipe_path, seed=seed)
        report = run_recipe(recipe, out, limit=limit, progress=False, log=lambda line: print(line, file=sys.stderr))
    acc = report["accuracy"]
    return {"recipe": recipe_path.stem, "seed": seed, "bytes": report["file_bytes"], "ratio": report["ratio"],
            "dense": round(acc["dense"], 2), "from_file": round(acc["from_file"], 2),
            "drop": round(acc["dense"] - acc["from_file"], 2), "seconds": round(sum(report["seconds"].values()))}


def summary(rows: list[dict], drop: float) -> dict:
    ratios, drops = [r["ratio"] for r in rows], [r["drop"] for r in rows]
    return {"recipe": rows[0]["recipe"], "seeds": len(rows), "ratio_mean": round(statistics.mean(ratios), 1),
            "ratio_min": min(ratios), "ratio_max": max(ratios), "drop_mean": round(statistics.mean(drops), 2),
            "drop_worst": max(drops), "iso_accuracy_every_seed": all(d <= drop for d in drops)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", action="append", required=True, help="a recipe YAML (repeatable)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--out", default=str(BENCH / "out" / "seeds"))
    parser.add_argument("--limit", type=int, help="use only the first N samples of each split (reduced)")
    parser.add_argument("--drop", type=float, default=0.3, help="iso-accuracy: at most this many points below dense")
    args = parser.parse_args()
    out, results = Path(args.out), {}
    for recipe in map(Path, args.recipe):
        rows = []
        for seed in args.seeds:
            row = run_one(recipe, seed, out / recipe.stem / f"seed-{seed}", args.limit)
            print(json.dumps(row), flush=True)
            rows.append(row)
        results[recipe.stem] = {"runs": rows, "summary": summary(rows, args.drop)}
        print(json.dumps(results[recipe.stem]["summary"]), flush=True)
    write_text(out / "seeds.json", json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
