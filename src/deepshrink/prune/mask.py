"""Binary weight masks attached as ``torch.nn.utils.parametrize`` parametrizations.

A masked layer computes with ``weight * mask``; through the parametrization the gradient
reaching the underlying weight is ``grad * mask``, so a pruned position never learns again.
Its *effective* weight is exactly 0.0 whatever happens to the underlying value.
The mask must be the first parametrization of a weight: quantizers chain after it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from deepshrink.errors import UserError
from deepshrink.models.attach import register_parametrization


@register_parametrization("mask")
class WeightMask(nn.Module):
    """``weight -> weight * mask``; ``mask`` is a buffer of the weight's shape and dtype, 1 = kept."""

    def __init__(self, mask: Tensor):
        super().__init__()
        self.register_buffer("mask", mask.detach().clone())

    def forward(self, weight: Tensor) -> Tensor:
        return weight * self.mask

    def spec(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_spec(cls, tensor: Tensor, args: dict[str, Any]) -> "WeightMask":
        return cls(torch.ones_like(tensor))


def weight_mask(module: nn.Module) -> WeightMask | None:
    """The :class:`WeightMask` on ``module.weight``, or None."""
    if not parametrize.is_parametrized(module, "weight"):
        return None
    first = module.parametrizations.weight[0]
    return first if isinstance(first, WeightMask) else None


def underlying_weight(module: nn.Module) -> Tensor:
    """The trained tensor behind ``module.weight`` (before any parametrization)."""
    if parametrize.is_parametrized(module, "weight"):
        return module.parametrizations.weight.original
    return module.weight


def attach_masks(model: nn.Module, masks: dict[str, Tensor], *, zero_pruned: bool = True) -> None:
    """Mask the weight of each module named in ``masks`` (qualified name -> 0/1 tensor).

    An existing :class:`WeightMask` is updated in place. With ``zero_pruned`` the underlying
    weights at pruned positions are set to 0.0 too (so parameter counts see the pruning).
    """
    for name, mask in masks.items():
        module = model.get_submodule(name)
        weight = module.weight
        if mask.shape != weight.shape:
            raise ValueError(f"mask for {name} has shape {tuple(mask.shape)}, weight {tuple(weight.shape)}")
        mask = mask.to(device=weight.device, dtype=weight.dtype)
        existing = weight_mask(module)
        if existing is not None:
            existing.mask.copy_(mask)
        elif parametrize.is_parametrized(module, "weight"):
            raise UserError(f"{name}.weight already carries another parametrization "
                            "(quantizer?); prune before quantizing")
        else:
            parametrize.register_parametrization(module, "weight", WeightMask(mask), unsafe=True)
    if zero_pruned:
        zero_pruned_weights(model, masks)


def masks_of(model: nn.Module) -> dict[str, Tensor]:
    """Qualified module name -> a copy of its mask, for every masked weight."""
    return {name: found.mask.clone() for name, module in model.named_modules()
            if (found := weight_mask(module)) is not None}


@torch.no_grad()
def zero_pruned_weights(model: nn.Module, names=None) -> None:
    """Set the underlying weights at pruned positions to 0.0 (of modules ``names``; default all)."""
    for name, module in model.named_modules():
        found = weight_mask(module)
        if found is not None and (names is None or name in names):
            module.parametrizations.weight.original.mul_(found.mask)


def finalize(model: nn.Module) -> None:
    """Bake every mask into a plain weight (``weight * mask``) and remove the parametrization.

    Only masks that are the sole parametrization of their weight can be baked; anything
    chained after a mask (a quantizer) must be finalized first.
    """
    for name, module in list(model.named_modules()):
        if weight_mask(module) is None:
            continue
        if len(module.parametrizations.weight) > 1:
            raise ValueError(f"{name}.weight has parametrizations chained after its mask; finalize them first")
        parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
