"""The compiled inner loops of huffman.py.

Kept apart so that importing deepzip does not import numba (half a second): this module loads the
first time a stream is Huffman coded or decoded.
"""
import heapq

import numba
import numpy as np


@numba.njit(cache=True)
def tree_depths(weights):
    m = len(weights)
    # (weight, height, node): among equal weights the shallower subtree merges first, which gives
    # the optimal code of least depth (Schwartz 1964), so the length limit binds as rarely as it can;
    # the node id settles what is left, so the same counts always give the same code.
    heap = [(weights[i], np.int64(0), np.int64(i)) for i in range(m)]
    heapq.heapify(heap)
    parent = np.empty(2 * m - 1, np.int64)
    node = m
    while len(heap) > 1:
        wa, ha, a = heapq.heappop(heap)
        wb, hb, b = heapq.heappop(heap)
        parent[a] = node
        parent[b] = node
        heapq.heappush(heap, (wa + wb, max(ha, hb) + 1, np.int64(node)))
        node += 1
    # A parent is always numbered after its children, so one backward sweep sets every depth.
    depth = np.zeros(2 * m - 1, np.int64)
    for i in range(2 * m - 3, -1, -1):
        depth[i] = depth[parent[i]] + 1
    return depth[:m]


@numba.njit(cache=True)
def total_bits(symbols, lengths):
    """Bits the stream will take, or -(i + 1) if symbol i has no code."""
    total = 0
    for i in range(len(symbols)):
        s = np.int64(symbols[i])
        if s < 0 or s >= len(lengths) or lengths[s] == 0:
            return -(i + 1)
        total += lengths[s]
    return total


@numba.njit(cache=True)
def pack(symbols, codes, lengths, out):
    # Codes collect at the bottom of a 64-bit accumulator and leave it 32 bits at a time, so the
    # per-symbol work is a shift, an or and a branch taken once per 32 bits. Bits above `held`
    # are stale and never read.
    acc = 0
    held = 0
    pos = 0
    for i in range(len(symbols)):
        s = symbols[i]
        acc = (acc << lengths[s]) | codes[s]
        held += lengths[s]
        if held >= 32:
            held -= 32
            word = acc >> held
            out[pos] = (word >> 24) & 0xFF
            out[pos + 1] = (word >> 16) & 0xFF
            out[pos + 2] = (word >> 8) & 0xFF
            out[pos + 3] = word & 0xFF
            pos += 4
    while held >= 8:
        held -= 8
        out[pos] = (acc >> held) & 0xFF
        pos += 1
    if held:
        out[pos] = (acc << (8 - held)) & 0xFF


@numba.njit(cache=True)
def unpack(padded, nbits, table, top, out):
    """Decode len(out) symbols; returns the bits used, -1 if they ran out or -2 at an unused code."""
    mask = (1 << top) - 1
    acc = 0  # int64: its sign bit may fill, but only the `held` bits at the bottom are ever read
    held = 0
    pos = 0
    used = 0
    for i in range(len(out)):
        if held < top:
            while held <= 56:
                acc = (acc << 8) | np.int64(padded[pos])
                pos += 1
                held += 8
        entry = table[(acc >> (held - top)) & mask]
        length = entry & 15
        if length == 0:
            return -2
        held -= length
        used += length
        if used > nbits:
            return -1
        out[i] = entry >> 4
    return used
