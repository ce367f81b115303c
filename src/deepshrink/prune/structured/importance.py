"""Channel importance: one score per channel of a group (higher = more important).

Weight criteria look at every Conv2d/Linear weight slice of the group: the output filters that
produce a channel (``out``, ``dw``) and the input slices that consume it (``in``, ``gin``).
Each slice of a channel is flattened into one vector per tensor; a tensor's scores are

- ``l1``: sum |w| of the channel's vector (Li et al. 2017, "Pruning Filters for Efficient ConvNets"),
- ``l2``: its Euclidean norm,
- ``fpgm``: the sum of its Euclidean distances to the other channels' vectors of that tensor;
  channels near the geometric median score low (He et al. 2019, "Filter Pruning via Geometric
  Median"),

and the group score is the **mean over the group's tensors** of those scores. ``bn-scale``
is the mean |gamma| over the group's BatchNorm layers (network slimming, Liu et al. 2017; train
with :class:`deepshrink.prune.regularizers.BatchNormL1` first); a group without BatchNorm has no
score. ``random`` draws uniform scores from a seeded generator. ``l1-largest`` reverses ``l1``
(the largest filters score lowest, so they are removed first): the control of Li et al.'s
filter-selection experiment, never a sensible choice in practice.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from deepshrink.errors import UserError
from deepshrink.prune.structured.group import Group

__all__ = ["CRITERIA", "channel_scores"]

CRITERIA = ("l1", "l2", "fpgm", "bn-scale", "random", "l1-largest")

_WEIGHT_DIM = {"out": 0, "dw": 0, "in": 1, "gin": 1}


def _vectors(weight: Tensor, dim: int, index: Tensor) -> Tensor:
    """(n, k·rest): the slices ``index`` (n, k) of ``weight`` along ``dim``, one row per channel."""
    n, k = index.shape
    taken = weight.detach().index_select(dim, index.flatten()).movedim(dim, 0)
    return taken.reshape(n, -1).float()


def _fpgm(vectors: Tensor) -> Tensor:
    return torch.cdist(vectors, vectors).sum(dim=1)


_VECTOR_SCORES: dict[str, Callable[[Tensor], Tensor]] = {
    "l1": lambda v: v.abs().sum(dim=1),
    "l2": lambda v: v.norm(dim=1),
    "fpgm": _fpgm,
    "l1-largest": lambda v: (lambda l1: l1.max() - l1)(v.abs().sum(dim=1)),  # l1's order reversed, >= 0
}


def channel_scores(model: nn.Module, group: Group, criterion: str, *,
                   generator: torch.Generator | None = None) -> Tensor | None:
    """Scores (n,) for the channels of ``group`` in ``model``; None when the criterion does not
    apply to the group (``bn-scale`` without a BatchNorm)."""
    if criterion not in CRITERIA:
        raise UserError(f"unknown criterion {criterion!r}; choose one of: {', '.join(CRITERIA)}")
    if criterion == "random":
        return torch.rand(group.n, generator=generator)
    per_tensor = []
    for (name, role), index in group.slices.items():
        module = model.get_submodule(name)
        if criterion == "bn-scale":
            if role == "bn" and module.affine:
                per_tensor.append(module.weight.detach()[index].abs().float().mean(dim=1))
        elif role in _WEIGHT_DIM:
            per_tensor.append(_VECTOR_SCORES[criterion](_vectors(module.weight, _WEIGHT_DIM[role], index)))
    return torch.stack(per_tensor).mean(dim=0) if per_tensor else None
