"""The .dzip file: spec constants, the container, the writer, the decoder and the assembler.

write.save      model → per-tensor streams → file
decode          streams → positions, codes, codebook (or values) per tensor
assemble.load   → nn.Module: dense weights, or sparse layers that never densify
recode          a file written again with another coder, same weights
"""

from .assemble import load, read_tensors
from .container import DzipReader, DzipWriter
from .decode import Decoded, TensorDecoder, TensorInfo
from .recode import recode
from .write import check_index_bits, save

__all__ = [
    "Decoded",
    "DzipReader",
    "DzipWriter",
    "TensorDecoder",
    "TensorInfo",
    "check_index_bits",
    "load",
    "read_tensors",
    "recode",
    "save",
]
