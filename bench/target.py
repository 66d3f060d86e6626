"""A target instead of a recipe, as a new user runs it: `--max-drop` from each seed's own dense model.

    python bench/target.py [--model lenet300:best-lenet300] [--model lenet5:best-lenet5]
        [--seeds 0 1 2 3 4] [--max-drop 0.3] [--jobs 2] [--out bench/out/target] [--limit N]
        [--max-candidates 8] [--model-arg width=0.25] [--image-size 32]

Each (model, seed) is `deepzip compress --model M --recipe R --seed S --max-drop X --out
OUT/<M>/seed-<S>`: the recipe's dense stage trains the seed's dense model on the training split
minus a seeded 10 % held out for validation, the search (deepzip.pipeline.search) chooses on that
validation split, and the test split is read once, for the chosen file. One thread per run,
`--jobs` runs at a time. A finished run (its search.json names a chosen file, or it failed) is
not run again; a killed one resumes. Prints one JSON line per run (ratio, validation drop, test
drop, candidates, minutes), then per model the verdict against the targets: test drop ≤ X on at
least 4 of 5 seeds and ≤ X + 0.2 on all, and the median ratio. Writes OUT/target.json, where the
models of an earlier invocation stay.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

BENCH = Path(__file__).resolve().parent
TARGET_RATIO = {"lenet300": 100, "lenet5": 150}


def run_one(model: str, recipe: str, seed: int, out: Path, args: argparse.Namespace) -> dict:
    import torch

    import deepzip as dz
    from deepzip.errors import TrainingError

    torch.set_num_threads(1)
    search_file = out / "search.json"
    done = json.loads(search_file.read_text()) if search_file.is_file() else {}
    if not done.get("chosen") or "test" not in done:
        log = open(out.parent / f"seed-{seed}.log", "a")
        model_args = dict(kv.split("=", 1) for kv in args.model_arg)
        try:
            recipe_dict = dz.pipeline.load_recipe(dz.pipeline.find_recipe(recipe), seed=seed).to_dict()
            if model_args:
                recipe_dict["model_args"] = {**recipe_dict["model_args"], **{k: float(v) for k, v in model_args.items()}}
            if args.image_size:
                recipe_dict["image_size"] = args.image_size
            result = dz.compress(model, None, recipe=recipe_dict, max_drop=args.max_drop, out=out, seed=seed,
                                 limit=args.limit, max_candidates=args.max_candidates, resume=True, progress=False,
                                 log=lambda line: print(line, file=log, flush=True))
            done = result.search
        except TrainingError as e:
            done = json.loads(search_file.read_text())
            done["failed"] = str(e)
    row = {"model": model, "recipe": Path(recipe).stem, "seed": seed, "candidates": len(done["candidates"]),
           "minutes": round(sum(c.get("minutes", 0) for c in done["candidates"]), 1)}  # training time, from each run's report
    if done.get("chosen"):
        chosen = next(c for c in done["candidates"] if c["dir"] == done["chosen"])
        t = done["test"]
        row.update(ratio=chosen["ratio"], bytes=chosen["bytes"], val_dense=done["dense"], val_drop=chosen["drop"],
                   val_se=chosen.get("se"),
                   test_dense=t["dense"], test_file=t["from_file"], test_drop=t["drop"])
    else:
        row["failed"] = done.get("failed", "no file within the drop")
    return row


def verdict(rows: list[dict], max_drop: float, target_ratio: float | None) -> dict:
    chosen = [r for r in rows if "ratio" in r]
    drops = [r["test_drop"] for r in chosen]
    ratios = [r["ratio"] for r in chosen]
    out = {"model": rows[0]["model"], "seeds": len(rows), "files": len(chosen),
           "test_drop_within": sum(d <= max_drop for d in drops), "test_drop_worst": max(drops, default=None),
           "val_drop_mean": round(statistics.mean(r["val_drop"] for r in chosen), 2) if chosen else None,
           "test_drop_mean": round(statistics.mean(drops), 2) if drops else None,
           "ratio_median": round(statistics.median(ratios), 1) if ratios else None,
           "ratio_min": min(ratios, default=None), "ratio_max": max(ratios, default=None)}
    out["targets_met"] = bool(chosen) and len(chosen) == len(rows) and out["test_drop_within"] >= len(rows) - 1 \
        and out["test_drop_worst"] <= max_drop + 0.2 and (target_ratio is None or out["ratio_median"] >= target_ratio)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", help="MODEL:RECIPE (repeatable) [lenet300:best-lenet300, "
                                                         "lenet5:best-lenet5]")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--max-drop", type=float, default=0.3)
    parser.add_argument("--max-candidates", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--limit", type=int, help="use only the first N samples of each split (reduced)")
    parser.add_argument("--model-arg", action="append", default=[], help="key=value for the model (width=0.25)")
    parser.add_argument("--image-size", type=int)
    parser.add_argument("--out", type=Path, default=BENCH / "out" / "target")
    args = parser.parse_args()
    pairs = [m.split(":", 1) for m in (args.model or ["lenet300:best-lenet300", "lenet5:best-lenet5"])]
    jobs = [(model, recipe, seed, args.out / model / f"seed-{seed}", args) for model, recipe in pairs
            for seed in args.seeds]
    for job in jobs:
        job[3].mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(run_one, *job) for job in jobs]
        rows = []
        for future in futures:
            rows.append(future.result())
            print(json.dumps(rows[-1]), flush=True)
    # Models run in separate invocations share one target.json: each run replaces only its own models.
    target_file = args.out / "target.json"
    results = json.loads(target_file.read_text()) if target_file.is_file() else {}
    for model, _ in pairs:
        mine = [r for r in rows if r["model"] == model]
        results[model] = {"runs": mine, "verdict": verdict(mine, args.max_drop, TARGET_RATIO.get(model))}
        print(json.dumps(results[model]["verdict"]), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    target_file.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    sys.path.insert(0, str(BENCH))
    main()
