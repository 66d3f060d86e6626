"""The compiled loops of context.py: an adaptive binary range coder and the matrix scan that feeds it.

Kept apart so that importing deepzip does not import numba: this module loads the first time a
stream is context coded or decoded. Encoder and decoder share every model function, so the two
sides cannot drift apart.
"""
import numba
import numpy as np

PROB_BITS = 16
ONE = 1 << PROB_BITS
P_MIN = 64  # no bin ever costs more than log2(65536 / 64) = 10 bits
TOP = 1 << 24
# After this many observations a model moves by 1/256 of the error: it still follows a layer whose
# rows differ (254 beat 62, 126 and 1022 on the demo, LeNet-5 and both best recipes' layers).
RATE_LIMIT = 254
COL_BUCKETS = 17  # 16 buckets of the column's density over the rows above, and one for the first row
ROW_BUCKETS = 16
SIG_CONTEXTS = COL_BUCKETS * ROW_BUCKETS * 2
# With left contexts on, a kept weight's first LEFT_LEVELS code decisions use one of 4 more trees,
# chosen by the top two bits of its left neighbour's code (when that is kept): where inputs are
# neighbouring pixels, so are the signs and sizes of their weights. Three levels did best against
# 1, 2 and all of them on the demo's fc1 and the best LeNet-300-100 recipe's fc1 (bench/codec.py).
LEFT_LEVELS = 3
TREES = 5


# RECIPROCAL[n] = 2^16 / (n + 2): a model's rate after n observations, as a multiply, not a divide.
RECIPROCAL = np.array([ONE // (n + 2) for n in range(RATE_LIMIT + 1)], np.int64)
SCALE_BITS = 20


@numba.njit(cache=True, inline="always")
def _update(prob, seen, ctx, bit, recip):
    # A count-driven rate: the first observations move the estimate as a Krichevsky–Trofimov
    # count would (1/2, 1/3, …), later ones by 1/256 — quick on a 1,000-weight layer, and
    # still following the drift from row to row on a large one.
    p = prob[ctx]
    n = seen[ctx]
    p += ((bit * ONE - p) * recip[n]) >> PROB_BITS
    if p < P_MIN:
        p = P_MIN
    elif p > ONE - P_MIN:
        p = ONE - P_MIN
    prob[ctx] = p
    if n < RATE_LIMIT:
        seen[ctx] = n + 1


@numba.njit(cache=True, inline="always")
def _sig_context(col_count, row_scale, row_count, col_scale, left):
    # Density buckets by multiplying with 16·2^20/n reciprocals computed once per row and column:
    # the two divisions a position would otherwise cost are most of a bin's time.
    if row_scale == 0:
        col = COL_BUCKETS - 1
    else:
        col = min((col_count * row_scale) >> SCALE_BITS, 15)
    row = min((row_count * col_scale) >> SCALE_BITS, ROW_BUCKETS - 1)
    return (col * ROW_BUCKETS + row) * 2 + left


@numba.njit(cache=True)
def _flush_byte(out, written, started, byte):
    # The first byte LZMA writes is always 0: it is left out, and the decoder assumes it.
    if started:
        if written >= out.size:
            return written, -1
        out[written] = byte
        return written + 1, 1
    return written, 1


@numba.njit(cache=True, inline="always")
def _shift_low(low, cache, cache_size, written, started, out):
    # LZMA's carry propagation: a byte is held back while a later carry could still change it.
    if low < 0xFF000000 or low >= (1 << 32):
        carry = low >> 32
        temp = cache
        while True:
            written, started = _flush_byte(out, written, started, (temp + carry) & 0xFF)
            if started < 0:
                return low, cache, cache_size, written, started
            temp = 0xFF
            cache_size -= 1
            if cache_size == 0:
                break
        cache = (low >> 24) & 0xFF
    cache_size += 1
    low = (low & 0x00FFFFFF) << 8
    return low, cache, cache_size, written, started


@numba.njit(cache=True, inline="always")
def _encode_bit(state, out, prob, seen, ctx, bit, recip):
    """Code one bit under model ctx; state is (low, range, cache, cache_size, written, started),
    returned updated (started < 0: `out` is full)."""
    low, rng, cache, cache_size, written, started = state
    bound = (rng >> PROB_BITS) * prob[ctx]
    if bit:
        rng = bound
    else:
        low += bound
        rng -= bound
    _update(prob, seen, ctx, bit, recip)
    while rng < TOP and started >= 0:
        rng <<= 8
        low, cache, cache_size, written, started = _shift_low(low, cache, cache_size, written, started, out)
    return low, rng, cache, cache_size, written, started


@numba.njit(cache=True, inline="always")
def _decode_bit(code_reg, rng, pos, data, prob, seen, ctx, recip):
    """Decode one bit under model ctx: (bit, code register, range, read position)."""
    bound = (rng >> PROB_BITS) * prob[ctx]
    if code_reg < bound:
        rng = bound
        bit = 1
    else:
        code_reg -= bound
        rng -= bound
        bit = 0
    _update(prob, seen, ctx, bit, recip)
    while rng < TOP:
        rng <<= 8
        code_reg = ((code_reg << 8) | (data[pos] if pos < data.size else 0)) & 0xFFFFFFFF
        pos += 1
    return bit, code_reg, rng, pos


@numba.njit(cache=True)
def _fresh_models(depth, cols):
    """Both sides start from the same state: every model at p = 1/2 with no observations, no
    kept weight counted in any column, and the per-column reciprocals of the row-density buckets."""
    return (np.full(SIG_CONTEXTS, ONE // 2, np.int64), np.zeros(SIG_CONTEXTS, np.int64),
            np.full(TREES << depth, ONE // 2, np.int64), np.zeros(TREES << depth, np.int64), np.zeros(cols, np.int64),
            np.array([(16 << SCALE_BITS) // (c + 1) for c in range(cols)], np.int64))


@numba.njit(cache=True, inline="always")
def _tree(left_codes, left_code, depth):
    """The tree a kept weight's first code decisions use: 0 without left contexts or when the left
    neighbour is pruned, else 1 + the top two bits of its code − 1 (one bit when depth is 1)."""
    if not left_codes or left_code == 0:
        return 0
    return 1 + ((left_code - 1) >> max(depth - 2, 0))


@numba.njit(cache=True)
def encode_matrix(codes, depth, out, left_codes):
    """Code a (rows, cols) matrix of codes 0..K (0: a pruned weight) into `out`; returns the
    bytes written, or -1 when `out` is too small. `depth` bits code a kept weight's code − 1;
    `left_codes` chooses their first trees by the left neighbour's code."""
    rows, cols = codes.shape
    state = (0, 0xFFFFFFFF, 0, 1, 0, 0)
    recip = RECIPROCAL
    sig_prob, sig_seen, tree_prob, tree_seen, col_count, col_scale = _fresh_models(depth, cols)
    for r in range(rows):
        row_scale = (16 << SCALE_BITS) // r if r else 0
        row_count = 0
        left = 0
        left_code = 0
        for c in range(cols):
            code = codes[r, c]
            bit = 1 if code != 0 else 0
            ctx = _sig_context(col_count[c], row_scale, row_count, col_scale[c], left)
            state = _encode_bit(state, out, sig_prob, sig_seen, ctx, bit, recip)
            if state[5] < 0:
                return -1
            left = bit
            left_code, prev = code, left_code
            if not bit:
                continue
            col_count[c] += 1
            row_count += 1
            value = code - 1
            node = 1
            tree = _tree(left_codes, prev, depth) << depth
            for level in range(depth - 1, -1, -1):
                b = (value >> level) & 1
                state = _encode_bit(state, out, tree_prob, tree_seen, node + tree, b, recip)
                if state[5] < 0:
                    return -1
                node = node * 2 + b
                if depth - level == LEFT_LEVELS:
                    tree = 0
    low, rng, cache, cache_size, written, started = state
    # Flush a value inside [low, low + range) that ends in as many zero bytes as it can: the
    # decoder reads zeros past the end, so the caller drops trailing zero bytes for free.
    for bits in (32, 24, 16, 8):
        mask = (1 << bits) - 1
        value = (low + mask) & ~mask
        if value < low + rng:
            low = value
            break
    for _ in range(5):
        low, cache, cache_size, written, started = _shift_low(low, cache, cache_size, written, started, out)
        if started < 0:
            return -1
    while written > 0 and out[written - 1] == 0:
        written -= 1
    return written


@numba.njit(cache=True)
def decode_matrix(data, rows, cols, depth, kept_max, out, left_codes):
    """Inverse of encode_matrix into `out` (rows × cols). Returns the bytes of `data` left unread
    (0 for a valid stream: reads past its end are the zeros the encoder dropped), or -1 - i when
    the code decoded at flat position i exceeds `kept_max` (a corrupt stream)."""
    pos = 0
    code_reg = 0
    for _ in range(4):
        code_reg = (code_reg << 8) | (data[pos] if pos < data.size else 0)
        pos += 1
    rng = 0xFFFFFFFF
    recip = RECIPROCAL
    sig_prob, sig_seen, tree_prob, tree_seen, col_count, col_scale = _fresh_models(depth, cols)
    for r in range(rows):
        row_scale = (16 << SCALE_BITS) // r if r else 0
        row_count = 0
        left = 0
        left_code = 0
        for c in range(cols):
            ctx = _sig_context(col_count[c], row_scale, row_count, col_scale[c], left)
            bit, code_reg, rng, pos = _decode_bit(code_reg, rng, pos, data, sig_prob, sig_seen, ctx, recip)
            left = bit
            if not bit:
                out[r, c] = 0
                left_code = 0
                continue
            col_count[c] += 1
            row_count += 1
            node = 1
            tree = _tree(left_codes, left_code, depth) << depth
            for level in range(depth):
                b, code_reg, rng, pos = _decode_bit(code_reg, rng, pos, data, tree_prob, tree_seen, node + tree, recip)
                node = node * 2 + b
                if level + 1 == LEFT_LEVELS:
                    tree = 0
            value = node - (1 << depth) + 1
            if value > kept_max:
                return -1 - (r * cols + c)
            out[r, c] = value
            left_code = value
    return max(data.size - pos, 0)
