"""Applying a criterion to a model's layers: compute the masks, attach them."""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from deepshrink.prune.criteria import MaskMethod
from deepshrink.prune.mask import attach_masks, underlying_weight, weight_mask
from deepshrink.train.distributed import broadcast_from_main


def attach_full_masks(model: nn.Module, names: Iterable[str]) -> None:
    """Attach all-ones masks to those of the named layers that have none (so the model's state
    has its final layout before training starts, which resuming from a checkpoint needs)."""
    modules = {name: model.get_submodule(name) for name in names}
    attach_masks(model, {name: torch.ones_like(m.weight) for name, m in modules.items()
                         if weight_mask(m) is None}, zero_pruned=False)


@torch.no_grad()
def prune_layers(model: nn.Module, names: Iterable[str], method: MaskMethod, amount: float, *,
                 from_underlying: bool = False, zero_pruned: bool = True) -> dict[str, float]:
    """Mask the named layers with ``method(weights, amount)``; returns name -> sparsity (0..1).

    Scores come from the effective weights (already pruned ones score 0), or with
    ``from_underlying`` from the weights behind the masks, so earlier pruned ones can return.
    """
    modules = {name: model.get_submodule(name) for name in names}
    weights = {name: (underlying_weight(m) if from_underlying else m.weight).detach()
               for name, m in modules.items()}
    masks = broadcast_from_main(method(weights, amount))  # identical on every rank under DDP
    attach_masks(model, masks, zero_pruned=zero_pruned)
    return {name: 1.0 - float(mask.sum()) / mask.numel() for name, mask in masks.items()}
