"""Which channels to remove: per-layer ratios or one global ranking, rounded channel counts.

A *plan* maps each group to the indices of its channels to remove (the lowest-scoring ones).
Every group keeps at least one channel, and with ``round_to`` = m > 1 the kept count is rounded
up to a multiple of m (or left at the group's full size when that is smaller).

For a MAC target, :func:`removal_order` lists single-channel removals in the order a growing
ratio makes them (per layer: channel j of a group of n goes at ratio j/n; global: by normalised
score), so every prefix of it is a plan (:func:`counts_plan`) and the MACs fall step by step;
:func:`next_block` is a group's next kept count off the rounding grid.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from fnmatch import fnmatchcase

import torch
from torch import Tensor

from deepshrink.prune.structured.group import Group

__all__ = ["VECTOR_CHANNELS", "counts_plan", "global_plan", "kept_channels", "layer_plan", "next_block",
           "ratio_for", "removal_order", "unaligned_groups"]

Scored = list[tuple[Group, Tensor]]
# channel block of the CPU convolution kernels (ONNX Runtime, oneDNN on AVX2/AVX-512): a layer cut
# to a count off this multiple loses most of its speed-up (measured in BENCHMARKS.md)
VECTOR_CHANNELS = 8


def kept_channels(n: int, keep: int, round_to: int = 1) -> int:
    """How many of ``n`` channels to keep when ``keep`` are wanted: at least 1, rounded up to a
    multiple of ``round_to``, at most ``n``."""
    keep = max(1, keep)
    if round_to > 1:
        keep = math.ceil(keep / round_to) * round_to
    return min(keep, n)


def unaligned_groups(channels: Mapping[str, tuple[int, int]], multiple: int = VECTOR_CHANNELS) -> list[str]:
    """Names of the groups that pruning took off a multiple of ``multiple`` channels
    (``channels``: {group: (before, after)}); ``--round-to 8`` keeps them on it."""
    return [name for name, (before, after) in channels.items()
            if after != before and before % multiple == 0 and after % multiple != 0]


def ratio_for(group: Group, ratio: float, layer_ratios: dict[str, float]) -> float:
    """The ratio of the first glob in ``layer_ratios`` matching the group's name, else ``ratio``."""
    return next((r for pattern, r in layer_ratios.items() if fnmatchcase(group.name, pattern)), ratio)


def _lowest(scores: Tensor, keep: int) -> Tensor:
    """Indices of all but the ``keep`` highest scores, ascending; among tied scores the earlier
    channel is removed first."""
    order = torch.sort(scores, stable=True).indices
    return order[: len(scores) - keep].sort().values


def layer_plan(scored: Scored, ratio: float, *, round_to: int = 1,
               layer_ratios: dict[str, float] | None = None) -> dict[Group, Tensor]:
    """Remove floor(ratio · n) channels of each group (ratio per group from ``layer_ratios``)."""
    plan = {}
    for group, scores in scored:
        r = ratio_for(group, ratio, layer_ratios or {})
        keep = kept_channels(group.n, group.n - math.floor(r * group.n + 1e-9), round_to)
        plan[group] = _lowest(scores, keep)
    return plan


def global_plan(scored: Scored, ratio: float, *, round_to: int = 1, normalize: bool = True) -> dict[Group, Tensor]:
    """Remove the floor(ratio · total) lowest-scoring channels over all groups together.

    With ``normalize`` each group's scores are divided by their mean first, so groups whose
    tensors differ in size or scale compare fairly (use raw scores for BatchNorm scales).
    """
    if not scored:
        return {}
    values = _normalised(scored, normalize)
    owners = torch.cat([torch.full((len(s),), i) for i, s in enumerate(values)])
    count = math.floor(ratio * len(owners) + 1e-9)
    chosen = torch.sort(torch.cat(values), stable=True).indices[:count]
    removed = torch.bincount(owners[chosen], minlength=len(scored))
    return {group: _lowest(scores, kept_channels(group.n, group.n - int(removed[i]), round_to))
            for i, (group, scores) in enumerate(scored)}


def _normalised(scored: Scored, normalize: bool) -> list[Tensor]:
    return [s / s.mean().clamp_min(1e-12) if normalize else s for _, s in scored]


def removal_order(scored: Scored, *, global_ranking: bool = False, normalize: bool = True,
                  layer_ratios: dict[str, float] | None = None) -> tuple[list[int], list[int]]:
    """(base, order): ``base[i]`` channels of group ``scored[i]`` are removed whatever the amount
    (per layer: the groups ``layer_ratios`` fixes, at their own ratio), and ``order`` lists group
    indices, one per further channel removed, in the order a growing ratio removes them.

    The first ``c`` entries of ``order`` (added to ``base``) give ``layer_plan(r)`` /
    ``global_plan(r)`` for the ratio ``r`` at which the c-th removal happens; counts that grow
    past a group's size are capped by :func:`kept_channels`."""
    base = [0] * len(scored)
    if global_ranking:
        values = _normalised(scored, normalize)
        owners = torch.cat([torch.full((len(s),), i) for i, s in enumerate(values)])
        ranked = torch.sort(torch.cat(values), stable=True).indices
        return base, owners[ranked].tolist()
    events = []
    for i, (group, _) in enumerate(scored):
        fixed = next((r for pattern, r in (layer_ratios or {}).items() if fnmatchcase(group.name, pattern)), None)
        if fixed is not None:
            base[i] = math.floor(fixed * group.n + 1e-9)
        else:
            events += [(j / group.n, i) for j in range(1, group.n)]
    return base, [i for _, i in sorted(events)]


def counts_plan(scored: Scored, removed: list[int], round_to: int = 1) -> dict[Group, Tensor]:
    """The plan removing ``removed[i]`` channels of group ``scored[i]`` (its lowest scores), kept
    counts rounded as in :func:`kept_channels`."""
    return {group: _lowest(scores, kept_channels(group.n, group.n - count, round_to))
            for (group, scores), count in zip(scored, removed)}


def next_block(n: int, removed: int, round_to: int = 1) -> int | None:
    """The fewest removals past ``removed`` that lower a group of ``n`` channels' kept count by
    one rounding step (``round_to`` channels, or onto the grid), or None when it cannot shrink."""
    kept = kept_channels(n, n - removed, round_to)
    lower = (kept - 1) // round_to * round_to if round_to > 1 else kept - 1
    return None if lower < 1 else n - lower
