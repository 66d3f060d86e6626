"""Architecture compression: Fire modules (SqueezeNet) against the networks they replace.

    python bench/fire.py [--limit N] [--epochs E] [--vgg-width W] [--out bench/out/fire]

For LeNet-5 vs lenet5-fire and VGG-16 vs vgg16-fire on Fashion-MNIST (plus ResNet-18), each
network is trained, pruned, weight-shared and saved by deepzip's pipeline with the same generic
recipe, and the row gives parameters, dense bytes, .dzip bytes and accuracy read back from the
file. The CIFAR-style networks see the images resized to 32×32; on a CPU they run at reduced
width on a subset (the flags say which; each row records them).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from deepzip.files import write_text
from deepzip.pipeline import run_recipe
from deepzip.pipeline.recipe import from_dict

CIFAR_NETS = ("vgg16", "vgg16-fire", "resnet18")


def recipe(model: str, epochs: float, model_args: dict, image_size: int | None) -> dict:
    return {"model": model, "model_args": model_args, "image_size": image_size, "coder": "auto", "index_bits": "auto",
            "dense": {"epochs": epochs, "lr": 1e-3},
            "prune": {"sparsity": {"conv": 0.6, "linear": 0.9}, "steps": 2, "schedule": "iterative",
                      "retrain": {"epochs": max(epochs / 4, 0.25), "lr": 1e-3}},
            "share": {"bits": {"conv": 6, "linear": 5}, "finetune": {"epochs": max(epochs / 8, 0.25), "lr": 1e-4},
                      "half_biases": True}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=None, help="samples per split (default: all)")
    ap.add_argument("--epochs", type=float, default=4)
    ap.add_argument("--vgg-width", type=float, default=0.25, help="width of the CIFAR-style networks")
    ap.add_argument("--vgg-limit", type=int, default=10000, help="samples per split for the CIFAR-style networks")
    ap.add_argument("--vgg-size", type=int, default=32, help="image size for the CIFAR-style networks")
    ap.add_argument("--out", type=Path, default=Path("bench/out/fire"))
    ap.add_argument("--only", nargs="*", default=["lenet5", "lenet5-fire", *CIFAR_NETS])
    args = ap.parse_args()
    rows = []
    for name in args.only:
        big = name in CIFAR_NETS
        model_args = {"width": args.vgg_width} if big else {}
        limit = args.vgg_limit if big else args.limit
        size = args.vgg_size if big else None
        r = from_dict(recipe(name, args.epochs, model_args, size))
        report = run_recipe(r, args.out / name, limit=limit, progress=False, log=lambda *a: print(*a, file=sys.stderr))
        row = {"model": name, "model_args": model_args, "samples": limit or "all", "image_size": size or 28,
               "epochs": args.epochs,
               "parameters": report["dense_bytes"] // 4, "dense_bytes": report["dense_bytes"],
               "file_bytes": report["file_bytes"], "ratio": report["ratio"],
               "dense_accuracy": report["accuracy"]["dense"], "accuracy_from_file": report["accuracy"]["from_file"]}
        rows.append(row)
        print(json.dumps(row), flush=True)
    write_text(args.out / "fire.json", json.dumps(rows, indent=1))
    lines = ["| model | input | train samples | parameters | dense bytes | .dzip bytes | ratio | dense acc. | acc. from file |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['model']}{' ×' + str(r['model_args']['width']) if r['model_args'] else ''} | "
              f"{r['image_size']}² | {r['samples']} | {r['parameters']:,} | "
              f"{r['dense_bytes']:,} | {r['file_bytes']:,} | {r['ratio']:.1f}× | {r['dense_accuracy']:.2f} | "
              f"{r['accuracy_from_file']:.2f} |" for r in rows]
    write_text(args.out / "fire.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
