"""Reports: the paper's per-layer table from a file's header, and a run's report as Markdown."""
from .markdown import report_markdown
from .tables import inspect, layer_rows, layers_markdown

__all__ = ["inspect", "layer_rows", "layers_markdown", "report_markdown"]
