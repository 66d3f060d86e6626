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
from .plots import candidates_png, distributions_png, history_png, layers_png, runs_png, widths_png

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

    Examples:
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


def scores_of(r: dict[str, Any]) -> tuple[dict[str, float], str]:
    """A report's scores per stage (validation) and the metric's name (reports before metrics
    had only accuracy)."""
    return r.get("scores", r.get("accuracy", {})), r.get("metric", {}).get("name", "accuracy")


def _summary(run: dict[str, Any]) -> str:
    r = run["report"]
    acc, metric = scores_of(r)
    unit = " %" if metric == "accuracy" else ""
    head = (f'<p class="big">{r["dense_bytes"]:,} bytes dense → {r["file_bytes"]:,} bytes on disk: '
            f'{r["ratio"]:.1f}× smaller; {metric} {acc.get("dense", float("nan")):.2f}{unit} → '
            f'{acc.get("from_file", float("nan")):.2f}{unit} on validation, read back from the file</p>')
    if r.get("test"):
        t = r["test"]
        head += (f'<p class="big">Test split (read once, for this file): dense {t["dense"]:.2f}{unit}, from the file '
                 f'{t["from_file"]:.2f}{unit} (drop {t["drop"]:.2f})</p>')
    stages = _table([f"{metric} after (validation)", *acc], [[metric, *(f"{v:.2f}" for v in acc.values())]])
    val = r.get("validation") or {}
    facts = _table(["model", "data set", "sparsity", "coder", "validation", "test samples", "identical predictions"],
                   [[r["model"], r["dataset"], f'{100 * r["sparsity"]:.1f} %', r["coder"],
                     f'{val.get("size", "?")} ({val.get("source", "?")})', r.get("test_samples", "?"),
                     r.get("identical_predictions")]])
    seconds = " · ".join(f"{_e(k)} {v:.1f} s" for k, v in r.get("seconds", {}).items())
    return head + stages + facts + f'<p class="note">Seconds per stage: {seconds}</p>'


def _layers(run: dict[str, Any]) -> str:
    rows = []
    for r in run["report"]["layers"]:
        coded = lambda k, r=r: f"{r[k]:.2f}" if k in r else "—"  # noqa: E731
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
        _img(history_png(history, scores_of(r)[1]), "loss and validation score per epoch, stages shaded") if history else
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

    Examples:
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
        points = [(r["name"], r["report"]["ratio"], scores_of(r["report"])[0]["from_file"]) for r in runs]
        body.append('<section id="runs"><h2>Validation score against ratio</h2>'
                    + _img(runs_png(points), "validation score against ratio")
                    + _table(["run", "model", "ratio", "file bytes", "from the file (validation)"],
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

    Examples:
        >>> write_report(["out/direct-70", "out/iterative-70"], "compare.html")
    """
    if not directories:
        raise ConfigError("give at least one run directory.")
    page = build_html([read_run(d) for d in directories])
    write_text(out, page)
    return Path(out)


def _search_section(search: dict[str, Any]) -> str:
    """The target search: every candidate (budgets, bytes, validation score, minutes) plotted
    and tabled, the chosen one ringed, and the test split's one reading."""
    metric, drop = search.get("metric", "accuracy"), search["max_drop"]
    unit = " %" if metric == "accuracy" else ""
    done = [c for c in search["candidates"] if "failed" not in c]
    chosen = search.get("chosen")
    rows = []
    for c in search["candidates"]:
        b = c.get("budgets", {})
        sparsity = ", ".join(f"{k} {100 * v:.1f}" for k, v in (b.get("sparsity") or {}).items())
        bits = ", ".join(f"{k} {v}" for k, v in (b.get("bits") or {}).items())
        units = ", ".join(f"{k} {100 * v:.0f}" for k, v in (b.get("units") or {}).items()) or "—"
        if "failed" in c:
            rows.append([f"#{c['index']}", f"{c['target_ratio']:.1f}×", sparsity, bits, units, "—", "—",
                         "failed", "—", _e(c["failed"][:80])])
            continue
        rows.append([f"#{c['index']}" + (" ← chosen" if c["dir"] == chosen else ""), f"{c['target_ratio']:.1f}×",
                     sparsity, bits, units, f"{c['bytes']:,}", f"{c['ratio']:.1f}×", f"{c['score']:.2f}{unit}",
                     f"{c['drop']:.2f}", f"{c.get('minutes', 0):.1f}"])
    test = search.get("test")
    head = (f'<p class="big">Dense {metric} on validation {search["dense"]:.2f}{unit}; allowed drop {drop:g}'
            f'{" points" if metric == "accuracy" else " %" if metric == "perplexity" else ""}; '
            f'{len(search["candidates"])} candidates; chosen: {_e(Path(chosen).name) if chosen else "none"}</p>')
    if test:
        head += (f'<p class="big">Test split, read once for the chosen file: dense {test["dense"]:.2f}{unit}, '
                 f'from the file {test["from_file"]:.2f}{unit} (drop {test["drop"]:.2f})</p>')
    val = search.get("validation") or {}
    note = (f'<p class="note">Validation: {val.get("size", "?")} samples ({val.get("source", "?")}'
            f'{", fraction " + str(val["fraction"]) + ", seed " + str(val["seed"]) if "fraction" in val else ""}). '
            f'Budgets: sparsity % per layer, codebook bits, units removed %. The search bisects the estimated '
            f'ratio; each candidate retrains from the dense model.</p>')
    plot = _img(candidates_png(done, drop, metric=metric, chosen=chosen, label=lambda c: f"#{c['index']}"),
                "candidates: validation score against ratio") if done else ""
    table = _table(["candidate", "estimated", "sparsity %", "bits", "units %", "file bytes", "ratio",
                    f"validation {metric}", "drop", "minutes"], rows)
    return f'<section id="search"><h2>Target search</h2>{head}{plot}{table}{note}</section>'


def write_search_report(search: dict[str, Any], out: str | os.PathLike) -> Path:
    """report.html of a target search: its candidates, then the chosen run's sections.

    Examples:
        >>> write_search_report(json.load(open("out/target/search.json")), "out/target/report.html")
    """
    chosen = read_run(search["chosen"])
    r = chosen["report"]
    title = f"deepzip: {r['model']} on {r['dataset']}, smallest file within {search['max_drop']:g}"
    body = [f"<h1>{_e(title)}</h1>", _search_section(search), run_section(chosen, heading=True)]
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{STYLE}</style></head>'
            f'<body>{"".join(body)}</body></html>\n')
    write_text(out, page)
    return Path(out)
