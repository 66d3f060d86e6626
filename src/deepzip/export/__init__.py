"""Exports of a compressed model to other runtimes: ONNX (export_onnx)."""
from .onnx import export_onnx

__all__ = ["export_onnx"]
