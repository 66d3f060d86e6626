"""Entropy coding of integer symbol streams (Huffman, ANS) and the sparse relative index."""
from .ans import decode as ans_decode
from .ans import encode as ans_encode
from .huffman import code_lengths
from .huffman import decode as huffman_decode
from .huffman import encode as huffman_encode
from .sparse import from_gaps, to_gaps
from .streams import CODERS, decode_stream, encode_stream, table_bytes

__all__ = ["CODERS", "ans_decode", "ans_encode", "code_lengths", "decode_stream", "encode_stream", "from_gaps",
           "huffman_decode", "huffman_encode", "table_bytes", "to_gaps"]
