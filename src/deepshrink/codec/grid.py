"""Linear-grid codebooks: a codebook whose row g is ``scale_g * (k - offset_g)`` for k = 0..K-1.

Linear (fixed-point) quantizers produce such codebooks: the levels q = qmin..qmax become the
codebook columns k = q - qmin, and ``offset = zero_point - qmin`` is the column of the zero
level. Stored as G scales (the file's float type) and G offsets of ceil(log2 K) bits instead
of G x K values: for a 3-bit per-channel layer, 2.4 bytes per channel instead of 16.

The decoder computes ``float32(scale) * float32(k - offset)`` in float32, the expression of
:func:`deepshrink.quant.linear.dequantize_levels` (``k - offset`` is a small exact integer, so
each value is one correctly rounded product): :func:`detect_grid` accepts a codebook only if
that expression reproduces every entry bit for bit, so storing the grid loses nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deepshrink.codec.bits import pack_uint, unpack_uint


@dataclass(frozen=True)
class Grid:
    """``levels`` columns per row; ``scales`` (G,) positive, in their storage type (float16 or
    float32); ``offsets`` (G,) int64 in [0, levels): the column of each row's zero level."""

    scales: np.ndarray
    offsets: np.ndarray
    levels: int

    @property
    def offset_bits(self) -> int:
        return offset_bits(self.levels)

    @property
    def nbytes(self) -> int:
        """Stored bytes: the scales and the packed offsets."""
        return self.scales.nbytes + offset_bytes(self.scales.size, self.levels)

    def codebook(self) -> np.ndarray:
        """The (G, levels) float32 codebook."""
        steps = np.arange(self.levels, dtype=np.float32)[None, :] - self.offsets.astype(np.float32)[:, None]
        return self.scales.astype(np.float32)[:, None] * steps

    def packed_offsets(self) -> bytes:
        return pack_uint(self.offsets, self.offset_bits)


def offset_bits(levels: int) -> int:
    """Bits of one packed offset into ``levels`` columns."""
    return max(1, (levels - 1).bit_length())


def offset_bytes(rows: int, levels: int) -> int:
    """Bytes of the packed offsets of ``rows`` rows of a ``levels``-column grid."""
    return (rows * offset_bits(levels) + 7) // 8


def detect_grid(codebook: np.ndarray, dtype: str) -> Grid | None:
    """The grid of ``codebook`` (G, K) float32 with its scales stored as ``dtype``, or None when
    some row is not exactly such a grid (k-means centroids, a K < 2 codebook) or a scale does not
    survive ``dtype`` (float16 underflow or overflow). With float16 scales, the grid's codebook
    is the rounded one (what the file decodes to), not ``codebook``."""
    codebook = np.ascontiguousarray(codebook, dtype=np.float32)
    rows, levels = codebook.shape
    if levels < 2 or rows == 0:
        return None
    is_zero = codebook == 0
    if not is_zero.any(axis=1).all():
        return None
    offsets = is_zero.argmax(axis=1).astype(np.int64)
    row = np.arange(rows)
    scales = np.where(offsets + 1 < levels, codebook[row, np.minimum(offsets + 1, levels - 1)],
                      -codebook[row, np.maximum(offsets - 1, 0)]).astype(np.float32)
    if not (np.isfinite(scales).all() and (scales > 0).all()):
        return None
    exact = Grid(scales, offsets, levels)
    if not np.array_equal(exact.codebook().view(np.int32), codebook.view(np.int32)):
        return None
    with np.errstate(over="ignore", under="ignore"):
        stored = scales.astype(dtype)
    if not (np.isfinite(stored).all() and (stored > 0).all()):
        return None
    return Grid(stored, offsets, levels)


def read_grid(scales: np.ndarray, packed: bytes, levels: int) -> Grid:
    """Inverse of storing a grid: ``scales`` (G,) and its packed offsets; ValueError when they
    cannot be a grid (a scale not positive and finite, an offset outside the columns)."""
    grid = Grid(scales, np.zeros(0, dtype=np.int64), levels)
    offsets = unpack_uint(packed, grid.offset_bits, scales.size).astype(np.int64)
    if not (np.isfinite(scales).all() and (scales > 0).all()):
        raise ValueError("a grid scale is not a positive number")
    if offsets.size and offsets.max() >= levels:
        raise ValueError(f"a grid offset is outside its {levels} levels")
    return Grid(scales, offsets, levels)
