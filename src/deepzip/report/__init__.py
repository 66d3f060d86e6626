"""Reports: the paper's per-layer table from a file's header; a run's report as Markdown and as a
self-contained HTML page with its plots."""

from .html import build_html, read_run, write_report, write_search_report
from .markdown import report_markdown
from .plots import candidates_png, sweep_png, weight_histograms
from .tables import inspect, inspect_text, layer_rows, layers_markdown

__all__ = [
    "build_html",
    "candidates_png",
    "inspect",
    "inspect_text",
    "layer_rows",
    "layers_markdown",
    "read_run",
    "report_markdown",
    "sweep_png",
    "weight_histograms",
    "write_report",
    "write_search_report",
]
