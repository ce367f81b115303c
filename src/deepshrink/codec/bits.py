"""Packing unsigned integers into bytes and back (numpy, vectorised).

Bits are written most significant first, values one after another, the last byte padded
with zero bits. :func:`pack_codes` packs values of varying widths (Huffman codes);
:func:`pack_uint` / :func:`unpack_uint` a fixed width.

How: each code is added into the 64-bit word holding its last bit (shifted there, the bits
that belong to the word before falling off the top); a code that straddles two words also
adds its high part into the word before. The words of a stream are sums over runs of codes
(``np.add.reduceat``), since the codes in a word occupy disjoint bits.
"""

from __future__ import annotations

import numpy as np

MAX_PACKED_WIDTH = 64  # widest code pack_codes takes
_WINDOW_WIDTH = 57     # widest value read through one unaligned 64-bit window (57 + 7 <= 64)


def pack_codes(codes: np.ndarray, sizes: np.ndarray) -> tuple[bytes, int]:
    """Concatenate ``codes`` (N,) unsigned, each right-aligned in ``sizes`` (N,) bits (1..64,
    ``code < 2**size``, not checked), most significant bit first; returns (bytes, number of bits)."""
    codes = np.asarray(codes, dtype=np.uint64).reshape(-1)
    if codes.size == 0:
        return b"", 0
    ends = np.cumsum(sizes, dtype=np.uint64)
    nbits = int(ends[-1])
    nwords = -(-nbits // 64)
    # the first code ending in each word: every word has one, as no code is longer than a word
    first = np.searchsorted(ends, np.arange(nwords, dtype=np.uint64) * np.uint64(64), side="right")
    # shift each code so that its last bit lands on the bit before the word boundary at or after it
    shift = (np.uint64(0) - ends) & np.uint64(63)
    words = np.add.reduceat(codes << shift, first)
    # the first code of a word may have started in the word before: its high bits go there
    lead = np.uint64(64) - shift[first[1:]]
    high = codes[first[1:]] >> np.minimum(lead, np.uint64(63))
    high[lead == 64] = 0
    words[:-1] += high
    return words.astype(">u8").tobytes()[: (nbits + 7) // 8], nbits


def windows(data: bytes, positions: np.ndarray, width: int) -> np.ndarray:
    """The ``width`` (1..57) bits of ``data`` starting at each bit of ``positions`` (N,) uint64,
    as uint64; bits past the end of ``data`` read as zero. Positions must lie below ``8 * len(data) + 1``."""
    words = byte_words(data)
    positions = np.asarray(positions, dtype=np.uint64)
    aligned = words[positions >> np.uint64(3)] << (positions & np.uint64(7))
    return aligned >> np.uint64(64 - width)


def byte_words(data: bytes) -> np.ndarray:
    """(len(data) + 1,) uint64: the 8 bytes of ``data`` starting at each byte, big-endian (zeros past the end)."""
    padded = np.frombuffer(bytes(data) + bytes(8), dtype=np.uint8)
    strided = np.ndarray((len(data) + 1,), dtype=">u8", buffer=padded, strides=(1,))
    return strided.astype(np.uint64)


def pack_uint(values: np.ndarray, width: int) -> bytes:
    """``values`` (N,) non-negative integers below ``2**width`` -> ceil(N * width / 8) bytes."""
    values = np.asarray(values, dtype=np.uint64).reshape(-1)
    if not 1 <= width <= 64:
        raise ValueError(f"bit width must be in [1, 64], got {width}")
    if values.size and width < 64 and int(values.max()) >> width:
        raise ValueError(f"a value does not fit in {width} bits")
    if width == 8:
        return values.astype(np.uint8).tobytes()
    if width <= MAX_PACKED_WIDTH:
        return pack_codes(values, np.full(values.size, width, dtype=np.uint8))[0]
    return values.astype(">u8").tobytes()


def unpack_uint(data: bytes, width: int, count: int) -> np.ndarray:
    """Inverse of :func:`pack_uint`: the first ``count`` values of ``width`` bits, as uint64 (count,).

    Raises ValueError when ``data`` holds fewer than ``count * width`` bits.
    """
    if not 1 <= width <= 64:
        raise ValueError(f"bit width must be in [1, 64], got {width}")
    if count < 0 or count * width > 8 * len(data):
        raise ValueError(f"{len(data)} bytes cannot hold {count} values of {width} bits")
    if width == 8:
        return np.frombuffer(data, dtype=np.uint8, count=count).astype(np.uint64)
    if width == 64:
        return np.frombuffer(data, dtype=">u8", count=count).astype(np.uint64)
    if width <= _WINDOW_WIDTH:
        return windows(data[: (count * width + 7) // 8], np.arange(count, dtype=np.uint64) * np.uint64(width), width)
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8), count=count * width)
    weights = np.uint64(1) << np.arange(width - 1, -1, -1, dtype=np.uint64)
    return (bits.reshape(count, width).astype(np.uint64) * weights).sum(axis=1, dtype=np.uint64)
