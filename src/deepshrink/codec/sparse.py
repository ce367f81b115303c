"""Relative (difference) indices of the non-zero positions of a flattened tensor (Han et al. 2016).

Each stored entry records ``skip``, the number of zero positions between it and the previous
entry, in ``width`` bits (0 .. 2**width - 1). Where a gap is longer, *filler* entries holding
a zero value are inserted every ``2**width`` positions, so every skip fits.
"""

from __future__ import annotations

import numpy as np

MAX_INDEX_WIDTH = 12


def gaps(positions: np.ndarray) -> np.ndarray:
    """Zeros skipped before each of the strictly increasing flat ``positions`` (N,) -> (N,) int64."""
    positions = np.asarray(positions, dtype=np.int64)
    return np.diff(positions, prepend=-1) - 1


def filler_count(gap: np.ndarray, width: int) -> int:
    """Number of filler entries the gaps need at ``width`` bits."""
    return int((np.asarray(gap, dtype=np.int64) >> width).sum())


def skip_counts(gap: np.ndarray, width: int) -> np.ndarray:
    """Frequency of each skip symbol (2**width,) in the entries of ``gap`` at ``width`` bits,
    fillers included (they all skip 2**width - 1)."""
    top = (1 << width) - 1
    counts = np.bincount(np.asarray(gap, dtype=np.int64) & top, minlength=top + 1)
    counts[top] += filler_count(gap, width)
    return counts


def relative_indices(positions: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Entries for the non-zero ``positions`` (N,) at ``width`` bits: (skips (M,), is_filler (M,) bool),
    M = N + fillers; each position's fillers come right before it."""
    gap = gaps(positions)
    top = (1 << width) - 1
    fillers = gap >> width
    if not fillers.any():
        return gap, np.zeros(gap.size, dtype=bool)
    # each position's own entry comes after all fillers so far; every other entry is a filler
    own = np.arange(gap.size) + np.cumsum(fillers)
    skips = np.full(gap.size + int(fillers.sum()), top, dtype=np.int64)
    skips[own] = gap & top
    is_filler = np.ones(skips.size, dtype=bool)
    is_filler[own] = False
    return skips, is_filler


def positions_from_skips(skips: np.ndarray) -> np.ndarray:
    """Flat positions (M,) of entries with the given skips (fillers included)."""
    return np.cumsum(np.asarray(skips, dtype=np.int64) + 1) - 1
