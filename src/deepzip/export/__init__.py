"""Exports of a compressed model to other runtimes: ONNX (export_onnx) and its timing there, and C
sources for a microcontroller (export_c)."""
from .c import CExport, export_c
from .onnx import export_onnx, onnx_latencies_ms, onnx_runner

__all__ = ["CExport", "export_c", "export_onnx", "onnx_latencies_ms", "onnx_runner"]
