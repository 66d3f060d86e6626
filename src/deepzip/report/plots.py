"""The pictures of a run, as PNG bytes: training history, weight distributions, per-layer bars,
accuracy against ratio. Rendered off-screen with matplotlib (loaded on first use)."""
from __future__ import annotations

import io
from typing import Any

import numpy as np
from torch import nn

from ..reparam import sharing
from ..selection import weights

HIST_BINS = 80
COLORS = {"dense": "#7f8c8d", "slim": "#8e44ad", "pruned": "#2e86c1", "rated": "#d68910",
          "shared": "#c0392b"}


def weight_histograms(model: nn.Module, ranges: dict[str, float] | None = None) -> dict[str, dict[str, Any]]:
    """Per weight matrix: a histogram of its non-zero values, its zero count and, when shared, its
    centroids. `ranges` fixes each layer's ±range (so one layer's moments share an axis).

    Examples:
        >>> weight_histograms(model)["fc1.weight"]["zeros"]
        223440
    """
    out = {}
    for w in weights(model):
        values = w.value.detach().float().cpu().flatten()
        nonzero = values[values != 0]
        limit = (ranges or {}).get(w.name) or float(values.abs().max()) or 1.0
        counts, edges = np.histogram(nonzero.numpy(), bins=HIST_BINS, range=(-limit, limit))
        sw = sharing(w.module, w.param)
        out[w.name] = {"limit": limit, "edges": [round(float(e), 6) for e in edges], "counts": counts.tolist(),
                       "zeros": int(values.numel() - nonzero.numel()), "total": int(values.numel()),
                       "centroids": None if sw is None else [round(float(c), 6) for c in sw.centroids.detach().cpu()]}
    return out


def _figure(width: float, height: float):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(width, height), dpi=110)
    return plt, fig


def _png(plt, fig) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def history_png(history: list[dict[str, Any]], metric: str = "accuracy") -> bytes:
    """Loss and the validation score (`metric`) per epoch over the whole run, each stage shaded and named."""
    plt, fig = _figure(9.5, 3.6)
    loss_ax = fig.add_subplot(1, 2, 1)
    acc_ax = fig.add_subplot(1, 2, 2)
    x = np.arange(1, len(history) + 1)
    loss_ax.plot(x, [r["loss"] for r in history], marker="o", ms=3, color="#34495e")
    acc_ax.plot(x, [r.get(metric, np.nan) for r in history], marker="o", ms=3, color="#27ae60")
    spans, start = [], 0
    for i in range(1, len(history) + 1):
        if i == len(history) or history[i]["stage"] != history[start]["stage"]:
            spans.append((start, i, history[start]["stage"]))
            start = i
    score = "validation accuracy (%)" if metric == "accuracy" else f"validation {metric}"
    for ax, label in ((loss_ax, "training loss"), (acc_ax, score)):
        for k, (a, b, stage) in enumerate(spans):
            ax.axvspan(a + 0.5, b + 0.5, color=("#f4f6f7", "#e3eef8")[k % 2], zorder=0)
            # Inside the span, at its top left; upright text only where the span is wide enough for it.
            ax.text(a + 0.6, 0.97, stage, transform=ax.get_xaxis_transform(), ha="left", va="top", fontsize=7,
                    color="#566573", clip_on=True, rotation=0 if (b - a) / len(history) >= 0.013 * len(stage) else 90)
        ax.set_xlabel("epoch (whole run)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    return _png(plt, fig)


def distributions_png(moments: dict[str, dict[str, dict[str, Any]]]) -> bytes:
    """One panel per layer: the non-zero weights before pruning, after it, and after sharing,
    with the centroids marked (the paper's Figure 5), zeros counted in the legend."""
    layers = list(next(iter(moments.values())))
    cols = min(3, len(layers))
    rows = -(-len(layers) // cols)
    plt, fig = _figure(3.6 * cols, 2.6 * rows)
    for i, layer in enumerate(layers):
        ax = fig.add_subplot(rows, cols, i + 1)
        for moment, data in moments.items():
            h = data.get(layer)
            if h is None:
                continue
            edges = np.asarray(h["edges"])
            ax.stairs(h["counts"], edges, color=COLORS.get(moment, "black"), fill=moment == "dense", alpha=0.35 if
                      moment == "dense" else 0.9, label=f"{moment} ({100 * h['zeros'] / max(1, h['total']):.0f} % zero)")
            for c in h["centroids"] or []:
                ax.axvline(c, color=COLORS["shared"], lw=0.5, alpha=0.3)
        ax.set_title(layer, fontsize=9)
        ax.set_yscale("log")
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6)
    return _png(plt, fig)


def layers_png(rows: list[dict[str, Any]]) -> bytes:
    """Per layer: the fraction of weights kept, and the coded bits per kept weight (values + positions)."""
    rows = [r for r in rows if r["encoding"] in ("shared", "sparse")]
    plt, fig = _figure(9.5, 3.2)
    names = [r["layer"] for r in rows]
    x = np.arange(len(rows))
    a = fig.add_subplot(1, 2, 1)
    a.bar(x, [100 * r["kept"] for r in rows], color="#2e86c1")
    a.set_ylabel("weights kept (%)")
    b = fig.add_subplot(1, 2, 2)
    b.bar(x, [r.get("weight_bits_coded", 0) for r in rows], color="#c0392b", label="value bits (coded)")
    b.bar(x, [r.get("index_bits_coded", 0) for r in rows], bottom=[r.get("weight_bits_coded", 0) for r in rows],
          color="#f5b041", label="position bits (coded)")
    b.set_ylabel("bits per kept weight")
    b.legend(fontsize=7)
    for ax in (a, b):
        ax.set_xticks(x, names, rotation=30, ha="right", fontsize=7)
        ax.grid(axis="y", alpha=0.3)
    return _png(plt, fig)


def widths_png(history: list[dict[str, Any]]) -> bytes:
    """Output units (channels, neurons) kept per layer after each epoch of a structured run."""
    plt, fig = _figure(6.5, 3.4)
    ax = fig.add_subplot(1, 1, 1)
    layers = sorted({k for r in history for k in r.get("widths", {})})
    for layer in layers:
        ax.plot(range(1, len(history) + 1), [r.get("widths", {}).get(layer, np.nan) for r in history], marker=".",
                label=layer)
    ax.set_xlabel("epoch (whole run)")
    ax.set_ylabel("units kept")
    ax.legend(fontsize=6, ncol=2)
    ax.grid(alpha=0.3)
    return _png(plt, fig)


def runs_png(points: list[tuple[str, float, float]]) -> bytes:
    """Accuracy read back from the file against the compression ratio, one point per run."""
    plt, fig = _figure(6.5, 3.8)
    ax = fig.add_subplot(1, 1, 1)
    for name, ratio, accuracy in points:
        ax.scatter(ratio, accuracy, s=30)
        ax.annotate(name, (ratio, accuracy), fontsize=7, xytext=(4, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("compression ratio (dense bytes / file bytes)")
    ax.set_ylabel("accuracy from the file (%)")
    ax.grid(alpha=0.3, which="both")
    return _png(plt, fig)


def sweep_png(points: list[dict[str, Any]], max_drop: float | None = None,
              references: list[tuple[str, float, float]] = (), metric: str = "accuracy") -> bytes:
    """A rate sweep: the validation score from the file against the ratio, one point per λ
    joined in order, the dense score and (with max_drop) the line a file must stay above;
    `references` are other runs (label, ratio, score) drawn beside it.

    Examples:
        >>> Path("sweep.png").write_bytes(sweep_png(json.load(open("out/sweep/sweep.json"))["points"], 0.3))
    """
    return candidates_png(points, max_drop, metric=metric, references=references,
                          label=lambda p: f"λ {p['weight']:g}", legend="rate training, one point per λ", join=True)


def candidates_png(points: list[dict[str, Any]], max_drop: float | None = None, *, metric: str = "accuracy",
                   label: Any = lambda p: "", legend: str = "candidates", chosen: str | None = None,
                   references: list[tuple[str, float, float]] = (), join: bool = False) -> bytes:
    """Candidate files of a search or sweep: validation score against ratio (log), each point
    labelled, the dense score, the tolerance line (dense − max_drop points of accuracy, or
    dense × (1 + max_drop %) of perplexity) and the chosen point ringed.

    Examples:
        >>> candidates_png(search["candidates"], 0.3, chosen=search["chosen"])
    """
    done = sorted((p for p in points if "failed" not in p), key=lambda p: p["ratio"]) if not join else \
        [p for p in points if "failed" not in p]
    plt, fig = _figure(6.5, 4.0)
    ax = fig.add_subplot(1, 1, 1)
    lower = metric != "perplexity"
    if done:
        ax.plot([p["ratio"] for p in done], [p["score"] for p in done], "^-" if join else "^",
                color=COLORS["rated"], label=legend)
        for p in done:
            ax.annotate(label(p), (p["ratio"], p["score"]), fontsize=7, xytext=(4, 3), textcoords="offset points")
            if chosen is not None and p.get("dir") == chosen:
                ax.scatter([p["ratio"]], [p["score"]], s=160, facecolors="none", edgecolors="#c0392b", zorder=4,
                           label="chosen")
        dense = done[0]["dense"]
        unit = " %" if metric == "accuracy" else ""
        ax.axhline(dense, color="gray", linestyle="--", label=f"dense {dense:.2f}{unit}")
        if max_drop is not None:
            line = dense - max_drop if lower else dense * (1 + max_drop / 100)
            ax.axhline(line, color="gray", linestyle=":", label=f"dense {'−' if lower else '+'} {max_drop:g}"
                                                                  f"{'' if lower else ' %'}")
    for name, ratio, score in references:
        ax.scatter([ratio], [score], marker="o", s=30, zorder=3, label=name)
    ax.set_xscale("log")
    from matplotlib import ticker  # plain 100×, 200× labels, not 10^2 at whatever decades the ratios span

    ax.xaxis.set_major_locator(ticker.LogLocator(subs=(1, 1.5, 2, 3, 5, 7)))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}×"))
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    ax.set_xlabel("compression ratio (dense bytes / file bytes)")
    ax.set_ylabel(f"validation {'accuracy (%)' if metric == 'accuracy' else metric}, from the file")
    ax.grid(alpha=0.3, which="both")
    if done or references:
        ax.legend(fontsize=7, loc="lower left" if lower else "upper left")
    return _png(plt, fig)


__all__ = ["candidates_png", "distributions_png", "history_png", "layers_png", "runs_png", "sweep_png", "weight_histograms",
           "widths_png"]
