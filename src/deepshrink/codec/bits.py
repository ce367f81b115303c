"""Packing unsigned integers of a fixed bit width into bytes and back (numpy, vectorised).

Bits are written most significant first, values one after another, the last byte padded
with zero bits.
"""

from __future__ import annotations

import numpy as np


def pack_uint(values: np.ndarray, width: int) -> bytes:
    """``values`` (N,) non-negative integers below ``2**width`` -> ceil(N * width / 8) bytes."""
    values = np.asarray(values, dtype=np.uint64)
    if not 1 <= width <= 64:
        raise ValueError(f"bit width must be in [1, 64], got {width}")
    if values.size and width < 64 and int(values.max()) >> width:
        raise ValueError(f"a value does not fit in {width} bits")
    shifts = np.arange(width - 1, -1, -1, dtype=np.uint64)
    bits = ((values[:, None] >> shifts) & np.uint64(1)).astype(np.uint8)
    return np.packbits(bits.reshape(-1)).tobytes()


def unpack_uint(data: bytes, width: int, count: int) -> np.ndarray:
    """Inverse of :func:`pack_uint`: the first ``count`` values of ``width`` bits, as uint64 (count,).

    Raises ValueError when ``data`` holds fewer than ``count * width`` bits.
    """
    if not 1 <= width <= 64:
        raise ValueError(f"bit width must be in [1, 64], got {width}")
    if count * width > 8 * len(data):
        raise ValueError(f"{len(data)} bytes cannot hold {count} values of {width} bits")
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8), count=count * width)
    weights = np.uint64(1) << np.arange(width - 1, -1, -1, dtype=np.uint64)
    return (bits.reshape(count, width).astype(np.uint64) * weights).sum(axis=1, dtype=np.uint64)
