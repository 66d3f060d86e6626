"""Reports: the paper's per-layer table from a file's header, as JSON, Markdown and plots."""
