"""report.html: one self-contained page per run (or a comparison of runs) to read in a browser.

Everything it shows comes from the files a run writes: report.json (sizes, accuracies, the
per-layer table), history.json (a row per epoch) and weights.json (weight histograms before
pruning, after it and after sharing). Images are inline PNGs (data: URLs); there is no script
and nothing is fetched, so the page reads offline, prints, and can be mailed as one file. Every
string that comes from a run (model, data set, layer and stage names) goes through html.escape.
"""
from __future__ import annotations

import base64
import html
import json
import os
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..files import write_text
from .plots import distributions_png, history_png, layers_png, runs_png, widths_png

STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1100px;
       color: #1c2833; line-height: 1.45; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { font-size: 1.2em; margin-top: 1.8em;
     border-bottom: 1px solid #d5d8dc; padding-bottom: 0.2em; }
.sub { color: #566573; margin-top: 0; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.9em; }
th, td { padding: 0.25em 0.7em; border-bottom: 1px solid #e5e8e8; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f4f6f7; }
.big { font-size: 1.3em; font-weight: 600; }
img { max-width: 100%; height: auto; display: block; margin: 0.5em 0; }
.note { color: #566573; font-size: 0.88em; }
@media print { body { margin: 0; max-width: none; } h2 { page-break-after: avoid; } img { page-break-inside: avoid; } }
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def read_run(directory: str | os.PathLike) -> dict[str, Any]:
    """What a run directory holds for a report: report.json (required), history.json and weights.json.

    Example:
        >>> read_run("out/lenet300")["report"]["ratio"]
        51.04
    """
    d = Path(directory)
    if not (d / "report.json").is_file():
        raise ConfigError(f"{d} holds no report.json: point deepzip report at the --out directory of a finished "
                          f"deepzip compress run.")
    run: dict[str, Any] = {"dir": d, "name": d.name or str(d)}
    for key in ("report", "history", "weights"):
        path = d / f"{key}.json"
        try:
            run[key] = json.loads(path.read_text()) if path.is_file() else None
        except (ValueError, OSError) as e:
            raise ConfigError(f"{path} is not readable JSON ({type(e).__name__}).") from None
    return run


def _summary(run: dict[str, Any]) -> str:
    r = run["report"]
    acc = r["accuracy"]
    head = (f'<p class="big">{r["dense_bytes"]:,} bytes dense → {r["file_bytes"]:,} bytes on disk: '
            f'{r["ratio"]:.1f}× smaller; {acc.get("dense", float("nan")):.2f} % → {acc["from_file"]:.2f} % '
            f'read back from the file</p>')
    stages = _table(["accuracy after", *acc], [["top-1 %", *(f"{v:.2f}" for v in acc.values())]])
    facts = _table(["model", "data set", "sparsity", "coder", "test samples", "identical predictions"],
                   [[r["model"], r["dataset"], f'{100 * r["sparsity"]:.1f} %', r["coder"], r.get("test_samples", "?"),
                     r.get("identical_predictions")]])
    seconds = " · ".join(f"{_e(k)} {v:.1f} s" for k, v in r.get("seconds", {}).items())
    return head + stages + facts + f'<p class="note">Seconds per stage: {seconds}</p>'


def _layers(run: dict[str, Any]) -> str:
    rows = []
    for r in run["report"]["layers"]:
        coded = lambda k: f"{r[k]:.2f}" if k in r else "—"  # noqa: E731
        rows.append([r["layer"], f"{r['weights']:,}", f"{100 * r['kept']:.1f} %", r.get("weight_bits", 32),
                     coded("weight_bits_coded"), r.get("index_bits", "—"), coded("index_bits_coded"),
                     f"{r['bytes']:,}", f"{r['percent_of_dense']:.2f} %", r["runtime"]])
    table = _table(["layer", "weights", "kept", "weight bits", "coded", "index bits", "coded", "bytes", "% of dense",
                    "runtime"], rows)
    return table + ('<p class="note">Bits are per kept weight, read from the file (the paper\'s Table 2). Index '
                    'bits 0: the layer stores a code for every weight, zero included.</p>')


def run_section(run: dict[str, Any], heading: bool) -> str:
    """The sections of one run: summary, per-layer table, history, distributions, bars, widths."""
    r = run["report"]
    parts = [f"<h2>{_e(run['name'])}: {_e(r['model'])} on {_e(r['dataset'])}</h2>" if heading else ""]
    parts.append('<section id="summary"><h2>Summary</h2>' + _summary(run) + "</section>")
    parts.append('<section id="layers"><h2>Per layer, from the file</h2>' + _layers(run) + "</section>")
    history = run.get("history") or []
    parts.append('<section id="history"><h2>Training history</h2>' + (
        _img(history_png(history), "loss and test accuracy per epoch, stages shaded") if history else
        '<p class="note">No history.json in this run (it trained nothing, or predates history files).</p>')
        + "</section>")
    weights = run.get("weights") or {}
    parts.append('<section id="distributions"><h2>Weight distributions</h2>' + (
        _img(distributions_png(weights), "weights before pruning, after pruning and after sharing")
        + '<p class="note">Non-zero weights of each layer (log counts) before pruning, after pruning and after '
          'weight sharing; vertical lines are the shared centroids.</p>' if weights else
        '<p class="note">No weights.json in this run.</p>') + "</section>")
    parts.append('<section id="bars"><h2>Sparsity and bits per layer</h2>'
                 + _img(layers_png(r["layers"]), "weights kept and coded bits per layer") + "</section>")
    if any("widths" in h for h in history):
        parts.append('<section id="widths"><h2>Widths per layer</h2>'
                     + _img(widths_png(history), "units kept per layer per iteration") + "</section>")
    return "\n".join(parts)


def build_html(runs: list[dict[str, Any]]) -> str:
    """The whole page for one run, or for several side by side with accuracy against ratio.

    Example:
        >>> page = build_html([read_run("out/a"), read_run("out/b")])
    """
    datasets = {r["report"]["dataset"] for r in runs}
    if len(datasets) > 1:
        raise ConfigError(f"these runs are on different data sets ({', '.join(sorted(datasets))}); their accuracies "
                          f"cannot be compared on one page.")
    first = runs[0]["report"]
    title = (f"deepzip: {first['model']} on {first['dataset']}" if len(runs) == 1 else
             f"deepzip: {len(runs)} runs on {first['dataset']}")
    body = [f"<h1>{_e(title)}</h1>",
            f'<p class="sub">{_e(", ".join(str(r["dir"]) for r in runs))}</p>']
    if len(runs) > 1:
        points = [(r["name"], r["report"]["ratio"], r["report"]["accuracy"]["from_file"]) for r in runs]
        body.append('<section id="runs"><h2>Accuracy against ratio</h2>' + _img(runs_png(points), "accuracy against ratio")
                    + _table(["run", "model", "ratio", "file bytes", "accuracy from file"],
                             [[n, r["report"]["model"], f"{ratio:.1f}×", f"{r['report']['file_bytes']:,}", f"{acc:.2f} %"]
                              for (n, ratio, acc), r in zip(points, runs)]) + "</section>")
    body.extend(run_section(run, heading=len(runs) > 1) for run in runs)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{STYLE}</style></head>'
            f'<body>{"".join(body)}</body></html>\n')


def write_report(directories: list[str | os.PathLike], out: str | os.PathLike) -> Path:
    """Build report.html for one run directory, or a comparison of several, and write it atomically.

    Args:
        directories: --out directories of deepzip compress runs.
        out: the HTML file to write.

    Example:
        >>> write_report(["out/direct-70", "out/iterative-70"], "compare.html")
    """
    if not directories:
        raise ConfigError("give at least one run directory.")
    page = build_html([read_run(d) for d in directories])
    write_text(out, page)
    return Path(out)
