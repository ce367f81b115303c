"""A Huffman-coded symbol stream with its code-length table, and what it costs in bytes.

The code-length table covers symbols 0 .. alphabet-1 (the alphabet ends at the largest
symbol used) and is stored as 4-bit values, two per byte.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deepshrink.codec import huffman
from deepshrink.codec.bits import pack_uint, unpack_uint

LENGTH_BITS = 4  # huffman.MAX_CODE_LENGTH = 15 fits in 4 bits
MAX_ALPHABET = 4096


@dataclass(frozen=True)
class CodedStream:
    """``count`` symbols Huffman-coded in ``data`` with the canonical code of ``lengths`` (alphabet,)."""

    data: bytes
    lengths: np.ndarray
    count: int

    @classmethod
    def of(cls, symbols: np.ndarray) -> "CodedStream":
        """Code ``symbols`` (N,) with the Huffman code of their own frequencies."""
        symbols = np.asarray(symbols, dtype=np.int64).reshape(-1)
        lengths = huffman.code_lengths(np.bincount(symbols))
        data, _ = huffman.encode(symbols, lengths)
        return cls(data, lengths, int(symbols.size))

    @property
    def alphabet(self) -> int:
        return int(self.lengths.size)

    def table_bytes(self) -> bytes:
        """The code-length table, 4 bits per symbol."""
        return pack_uint(self.lengths, LENGTH_BITS) if self.alphabet else b""

    def decode(self) -> np.ndarray:
        """The symbols (count,) int64; ValueError if the stream is corrupt."""
        return huffman.decode(self.data, self.lengths, self.count)


def read_table(data: bytes, alphabet: int) -> np.ndarray:
    """Inverse of :meth:`CodedStream.table_bytes`: (alphabet,) uint8 code lengths."""
    return unpack_uint(data, LENGTH_BITS, alphabet).astype(np.uint8)


def table_size(alphabet: int) -> int:
    """Bytes of a code-length table for ``alphabet`` symbols."""
    return (alphabet * LENGTH_BITS + 7) // 8


def coded_size(counts: np.ndarray) -> int:
    """Bytes of a stream with symbol frequencies ``counts``: coded bits plus code-length table."""
    counts = np.asarray(counts, dtype=np.int64)
    used = np.flatnonzero(counts)
    if used.size == 0:
        return 0
    if used.size > MAX_ALPHABET or used[-1] >= MAX_ALPHABET:
        raise ValueError(f"alphabet larger than {MAX_ALPHABET} symbols")
    lengths = huffman.code_lengths(counts[: used[-1] + 1])
    return (int((counts[: used[-1] + 1] * lengths).sum()) + 7) // 8 + table_size(int(used[-1]) + 1)
