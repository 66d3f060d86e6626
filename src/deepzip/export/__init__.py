"""Exports of a compressed model to other runtimes: ONNX (export_onnx), and its timing there."""
from .onnx import export_onnx, onnx_latencies_ms, onnx_runner

__all__ = ["export_onnx", "onnx_latencies_ms", "onnx_runner"]
