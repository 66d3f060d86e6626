"""Exports of a compressed model to other runtimes: ONNX (export_onnx) and its timing there, and C
sources for a microcontroller (export_c), and a static web page that decodes and runs it with WebAssembly
(export_web)."""
from .c import CExport, export_c
from .onnx import export_onnx, onnx_latencies_ms, onnx_runner
from .web import WebExport, export_web

__all__ = ["CExport", "WebExport", "export_c", "export_onnx", "export_web", "onnx_latencies_ms", "onnx_runner"]
