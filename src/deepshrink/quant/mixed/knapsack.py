"""Choosing the bits of every layer under a size budget: an exact multiple-choice knapsack."""

from __future__ import annotations

from typing import Mapping

import numpy as np

from deepshrink.errors import UserError


def assign_bits(sensitivity: Mapping[str, Mapping[int, float]], sizes: Mapping[str, Mapping[int, int]],
                budget_bytes: int, *, granularity: int = 64) -> dict[str, int]:
    """One bit-width per layer minimising the summed ``sensitivity`` subject to the summed
    ``sizes`` (bytes) being at most ``budget_bytes``; ties go to the smaller size.

    Dynamic programme over sizes: each layer's smallest choice is always paid, and what a
    larger choice adds is rounded *up* to a multiple of ``granularity`` bytes (the spare
    budget down), so the result always fits the budget, it exists whenever the smallest
    choices fit, and it is exactly optimal for ``granularity=1``; otherwise it is at least as
    good as the exact optimum for a budget ``len(layers) * granularity`` bytes smaller.
    Time and memory O(layers × options × spare budget / granularity).
    A :class:`UserError` when even every layer's smallest choice exceeds the budget.
    """
    layers = list(sensitivity)
    if set(layers) != set(sizes) or any(set(sensitivity[n]) != set(sizes[n]) or not sizes[n] for n in layers):
        raise ValueError("sensitivity and sizes must hold the same layers and bit-widths")
    if granularity < 1:
        raise ValueError(f"granularity must be >= 1 byte, got {granularity}")
    smallest = sum(min(sizes[n].values()) for n in layers)
    if smallest > budget_bytes:
        raise UserError(f"a budget of {budget_bytes} bytes is below the smallest mixed-precision size, "
                        f"{smallest} bytes (every layer at its smallest choice)")
    ordered = {name: _options(sizes[name], granularity) for name in layers}
    capacity = _capacity(budget_bytes - smallest, granularity, ordered.values())
    best = np.zeros(capacity + 1)  # best[u]: least cost of the layers so far within u units
    choices, extras = [], []
    for name in layers:
        options, units = ordered[name]
        candidates = np.full((len(options), capacity + 1), np.inf)
        for row, (bits, extra) in enumerate(zip(options, units)):
            if extra <= capacity:
                candidates[row, extra:] = best[:capacity + 1 - extra] + float(sensitivity[name][bits])
        picked = candidates.argmin(axis=0)  # first minimum: the smaller size on ties
        best = candidates[picked, np.arange(capacity + 1)]
        choices.append((options, picked))
        extras.append(units)
    assignment, spare = {}, capacity
    for name, (options, picked), units in zip(reversed(layers), reversed(choices), reversed(extras)):
        row = int(picked[spare])
        assignment[name] = options[row]
        spare -= units[row]
    return {name: assignment[name] for name in layers}


def _options(sizes: Mapping[int, int], granularity: int) -> tuple[list[int], list[int]]:
    """A layer's bit-widths by size (then bits) and what each adds to the smallest, in units of
    ``granularity`` bytes rounded up."""
    options = sorted(sizes, key=lambda b: (sizes[b], b))
    base = sizes[options[0]]
    return options, [-(-(sizes[b] - base) // granularity) for b in options]


def _capacity(spare_bytes: int | float, granularity: int, ordered) -> int:
    """The spare budget in whole units, capped at what every layer's largest choice adds: any
    larger capacity gives the same choices, and an absurd budget (``1e300`` KiB) no huge table."""
    most = sum(max(units) for _, units in ordered)
    if spare_bytes >= most * granularity:
        return most
    return int(spare_bytes // granularity)
