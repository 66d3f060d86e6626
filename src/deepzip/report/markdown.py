"""report.md: a run's report as Markdown (the same facts as report.json)."""
from __future__ import annotations

from typing import Any

from .tables import layers_markdown


def report_markdown(r: dict[str, Any]) -> str:
    """The run summary, accuracies per stage, the per-layer table and seconds per stage.

    Examples:
        >>> print(report_markdown(json.load(open("out/lenet300/report.json"))))
    """
    acc = r.get("scores", r.get("accuracy", {}))
    metric = r.get("metric", {}).get("name", "accuracy")
    test = r.get("test")
    lines = [f"# deepzip: {r['model']} on {r['dataset']}", "",
             "| dense bytes | file bytes | ratio | sparsity | coder |", "|---:|---:|---:|---:|---|",
             f"| {r['dense_bytes']:,} | {r['file_bytes']:,} | **{r['ratio']:.1f}×** | {100 * r['sparsity']:.1f}% "
             f"| {r['coder']} |",
             "", f"| {metric} (validation) | " + " | ".join(acc) + " |", "|---|" + "---:|" * len(acc),
             f"| {'top-1 %' if metric == 'accuracy' else metric} | " + " | ".join(f"{v:.2f}" for v in acc.values()) + " |",
             *(["", f"Test split, read once for this file: dense {test['dense']:.2f}, from the file "
                     f"{test['from_file']:.2f} (drop {test['drop']:.2f})."] if test else []), "",
             "## Layers (the paper's Table 2, from the file)", "", layers_markdown(r["layers"]), "",
             "## Seconds per stage", "", " | ".join(f"{k} {v:.1f}" for k, v in r["seconds"].items()), ""]
    if r.get("rate"):
        lines[-4:-4] = _rate_lines(r["rate"])
    return "\n".join(lines)


def _rate_lines(rate: dict[str, dict[str, Any]]) -> list[str]:
    """What rate training decided per layer, and its estimate (n · H of the live block's codes)
    beside the bytes the file spends on the layer."""
    rows = ["## Rate training (estimate against the file)", "",
            "| layer | pruned | centroids | estimate | file | file / estimate |", "|---|---:|---:|---:|---:|---:|"]
    for name, v in rate.items():
        ratio = f"{v['file_bytes'] / v['estimate_bytes']:.2f}" if v.get("file_bytes") and v["estimate_bytes"] else "—"
        rows.append(f"| {name} | {100 * v['sparsity']:.1f}% | {v['centroids']} | {v['estimate_bytes']:,} B | "
                    f"{v['file_bytes'] or 0:,} B | {ratio} |")
    return [*rows, ""]
