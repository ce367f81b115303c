"""Canonical Huffman coding, vectorised with numpy.

A code is described by its code lengths alone (one per symbol of the alphabet, 0 = unused,
at most :data:`MAX_CODE_LENGTH` bits); canonical codes are assigned from the lengths in order
of (length, symbol), so only the lengths need storing. Bits are written most significant first.

Decoding is table-driven and has no per-bit or per-symbol Python loop: the next
``L = max(lengths)`` bits at *every* bit position are read at once, one table lookup gives the
(symbol, length) starting there, and the chain of symbol start positions from bit 0 is
followed by pointer doubling (``log2(count)`` vectorised gathers).
"""

from __future__ import annotations

import heapq

import numpy as np

MAX_CODE_LENGTH = 15


def code_lengths(counts: np.ndarray, max_length: int = MAX_CODE_LENGTH) -> np.ndarray:
    """Huffman code lengths (uint8, same size as ``counts``) for symbol frequencies ``counts``,
    limited to ``max_length`` bits. Unused symbols get 0; a single used symbol gets 1 bit."""
    counts = np.asarray(counts, dtype=np.int64)
    lengths = np.zeros(counts.size, dtype=np.uint8)
    used = np.flatnonzero(counts)
    if used.size > 1 << max_length:
        raise ValueError(f"{used.size} symbols cannot be coded in {max_length} bits")
    if used.size == 1:
        lengths[used] = 1
    elif used.size > 1:
        depth = _tree_depths(counts[used])
        lengths[used] = _limit_lengths(depth, counts[used], max_length)
    return lengths


def _tree_depths(weights: np.ndarray) -> np.ndarray:
    """Depth of each leaf in a Huffman tree built with a heap over ``weights`` (all > 0)."""
    n = weights.size
    heap = [(int(w), i) for i, w in enumerate(weights)]
    heapq.heapify(heap)
    parent = np.zeros(2 * n - 1, dtype=np.int64)
    node = n
    while len(heap) > 1:
        w1, a = heapq.heappop(heap)
        w2, b = heapq.heappop(heap)
        parent[a] = parent[b] = node
        heapq.heappush(heap, (w1 + w2, node))
        node += 1
    depth = np.zeros(2 * n - 1, dtype=np.int64)
    for child in range(2 * n - 3, -1, -1):  # parents are created after their children
        depth[child] = depth[parent[child]] + 1
    return depth[:n]


def _limit_lengths(lengths: np.ndarray, weights: np.ndarray, max_length: int) -> np.ndarray:
    """Clamp code lengths to ``max_length`` and restore the Kraft inequality: lengthen the
    deepest codes still below the limit, then shorten the most frequent symbols while room is left."""
    lengths = np.minimum(lengths, max_length)
    budget = 1 << max_length
    kraft = int((1 << (max_length - lengths)).sum())
    while kraft > budget:
        below = np.flatnonzero(lengths < max_length)
        deepest = below[lengths[below] == lengths[below].max()]
        victim = deepest[np.argmin(weights[deepest])]
        kraft -= 1 << (max_length - lengths[victim] - 1)
        lengths[victim] += 1
    for symbol in np.argsort(-weights, kind="stable"):
        while lengths[symbol] > 1 and kraft + (1 << (max_length - lengths[symbol])) <= budget:
            kraft += 1 << (max_length - lengths[symbol])
            lengths[symbol] -= 1
    return lengths


def canonical_codes(lengths: np.ndarray) -> np.ndarray:
    """Canonical code (uint32, right-aligned in its length) of each symbol; 0 where unused."""
    lengths = np.asarray(lengths, dtype=np.int64)
    order = _canonical_order(lengths)
    top = int(lengths.max(initial=0))
    spans = np.int64(1) << (top - lengths[order])
    starts = np.concatenate([[0], np.cumsum(spans)[:-1]]).astype(np.int64)
    codes = np.zeros(lengths.size, dtype=np.uint32)
    codes[order] = (starts >> (top - lengths[order])).astype(np.uint32)
    return codes


def _canonical_order(lengths: np.ndarray) -> np.ndarray:
    """Used symbols sorted by (length, symbol)."""
    used = np.flatnonzero(lengths)
    return used[np.argsort(lengths[used], kind="stable")]


def check_lengths(lengths: np.ndarray) -> None:
    """Raise ValueError unless ``lengths`` describe a prefix code (Kraft sum <= 1)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    if lengths.size and (lengths.min() < 0 or lengths.max() > MAX_CODE_LENGTH):
        raise ValueError(f"code lengths must lie in [0, {MAX_CODE_LENGTH}]")
    used = lengths[lengths > 0]
    if int((np.int64(1) << (MAX_CODE_LENGTH - used)).sum()) > 1 << MAX_CODE_LENGTH:
        raise ValueError("code lengths are over-subscribed (not a prefix code)")


def encode(symbols: np.ndarray, lengths: np.ndarray) -> tuple[bytes, int]:
    """Huffman-code ``symbols`` (N,) with the canonical code of ``lengths``; returns
    (bytes, number of bits). Raises ValueError for a symbol without a code."""
    symbols = np.asarray(symbols, dtype=np.int64).reshape(-1)
    lengths = np.asarray(lengths, dtype=np.int64)
    check_lengths(lengths)
    if symbols.size == 0:
        return b"", 0
    if symbols.min() < 0 or symbols.max() >= lengths.size or not lengths[symbols].all():
        raise ValueError("a symbol has no code")
    sizes = lengths[symbols]
    # each code left-aligned in 16 bits (MAX_CODE_LENGTH <= 16), unpacked, cut to its length
    aligned = canonical_codes(lengths).astype(np.uint16)[symbols] << (16 - sizes).astype(np.uint16)
    bits = np.unpackbits(aligned.astype(">u2").view(np.uint8).reshape(-1, 2), axis=1)
    bits = bits[np.arange(16) < sizes[:, None]]
    return np.packbits(bits).tobytes(), int(bits.size)


def decode(data: bytes, lengths: np.ndarray, count: int) -> np.ndarray:
    """Decode ``count`` symbols (int64) from ``data``, coded with the canonical code of ``lengths``.

    The stream must use all of ``data``: only zero bits may follow the last code, and fewer
    than 8 of them. Any violation (an invalid code, too few or too many bits) is a ValueError.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    check_lengths(lengths)
    if count == 0:
        if data:
            raise ValueError("stream has bytes but no symbols")
        return np.zeros(0, dtype=np.int64)
    if not lengths.any() or count * int(lengths[lengths > 0].min()) > 8 * len(data):
        raise ValueError(f"{len(data)} bytes cannot hold {count} symbols")
    symbol_at, size_at = _lookup_every_bit(data, lengths)
    starts = _follow_chain(size_at, count)
    nbits = 8 * len(data)
    if starts[-1] >= nbits or not size_at[starts].all():
        raise ValueError("invalid code in stream")
    end = int(starts[-1]) + int(size_at[starts[-1]])
    if end > nbits or nbits - end >= 8:
        raise ValueError(f"stream length does not match: {count} symbols use {end} of {nbits} bits")
    if end < nbits and data[-1] & ((1 << (nbits - end)) - 1):
        raise ValueError("non-zero padding bits after the last code")
    return symbol_at[starts]


def _lookup_every_bit(data: bytes, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For every bit position of ``data``: the symbol whose code starts there and its length
    (0 where the bits are no valid code)."""
    top = int(lengths.max())
    order = _canonical_order(lengths)
    repeats = np.int64(1) << (top - lengths[order])
    table_symbol = np.zeros(1 << top, dtype=np.int64)
    table_size = np.zeros(1 << top, dtype=np.int32)
    filled = int(repeats.sum())
    table_symbol[:filled] = np.repeat(order, repeats)
    table_size[:filled] = np.repeat(lengths[order], repeats)
    raw = np.frombuffer(data + b"\0\0\0", dtype=np.uint8).astype(np.uint32)
    words = raw[:-3] << 24 | raw[1:-2] << 16 | raw[2:-1] << 8 | raw[3:]
    windows = (words[:, None] << np.arange(8, dtype=np.uint32)) >> np.uint32(32 - top)
    windows = windows.reshape(-1)
    return table_symbol[windows], table_size[windows]


def _follow_chain(size_at: np.ndarray, count: int) -> np.ndarray:
    """Start positions of the first ``count`` codes: 0, then p + size_at[p], by pointer doubling.
    Invalid positions (size 0) and positions past the end jump to a sentinel (= len(size_at))."""
    n = size_at.size
    index_type = np.int32 if n < 2**31 - 64 else np.int64
    jump = np.arange(n + 1, dtype=index_type)
    jump[:n] += size_at.astype(index_type)
    jump[:n][size_at == 0] = n
    np.minimum(jump, n, out=jump)
    starts = np.zeros(1, dtype=index_type)
    while starts.size < count:
        starts = np.concatenate([starts, jump[starts]])
        if starts.size < count:
            jump = jump[jump]
    return starts[:count]


def entropy_bits(symbols: np.ndarray) -> float:
    """Shannon entropy of the empirical distribution of ``symbols`` (non-negative ints), bits/symbol."""
    symbols = np.asarray(symbols, dtype=np.int64).reshape(-1)
    if symbols.size == 0:
        return 0.0
    counts = np.bincount(symbols)
    p = counts[counts > 0] / symbols.size
    return float(-(p * np.log2(p)).sum())
