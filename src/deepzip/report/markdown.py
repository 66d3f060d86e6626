"""report.md: a run's report as Markdown (the same facts as report.json)."""
from __future__ import annotations

from typing import Any

from .tables import layers_markdown


def report_markdown(r: dict[str, Any]) -> str:
    """The run summary, accuracies per stage, the per-layer table and seconds per stage.

    Example:
        >>> print(report_markdown(json.load(open("out/lenet300/report.json"))))
    """
    acc = r["accuracy"]
    lines = [f"# deepzip: {r['model']} on {r['dataset']}", "",
             "| dense bytes | file bytes | ratio | sparsity | coder |", "|---:|---:|---:|---:|---|",
             f"| {r['dense_bytes']:,} | {r['file_bytes']:,} | **{r['ratio']:.1f}×** | {100 * r['sparsity']:.1f}% | {r['coder']} |",
             "", "| accuracy | " + " | ".join(acc) + " |", "|---|" + "---:|" * len(acc),
             "| top-1 % | " + " | ".join(f"{v:.2f}" for v in acc.values()) + " |", "",
             "## Layers (the paper's Table 2, from the file)", "", layers_markdown(r["layers"]), "",
             "## Seconds per stage", "", " | ".join(f"{k} {v:.1f}" for k, v in r["seconds"].items()), ""]
    return "\n".join(lines)
