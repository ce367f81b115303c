"""Fine-grained pruning criteria: functions returning 0/1 masks (1 = kept) of a weight's shape.

Counts are exact: a sparsity q prunes exactly ``round(q * numel)`` elements, the smallest by
magnitude, ties broken by position (stable sort), never by a float percentile.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from deepshrink.errors import UserError

CRITERIA = ("magnitude", "std", "random")
SCOPES = ("layer", "global")

# (weights, amount) -> masks; amount is a sparsity (magnitude, random) or a std factor (std).
MaskMethod = Callable[[dict[str, Tensor], float], dict[str, Tensor]]


def pruned_count(numel: int, sparsity: float) -> int:
    """How many of ``numel`` elements a sparsity in [0, 1) prunes: round(sparsity * numel)."""
    if not 0.0 <= sparsity < 1.0:
        raise UserError(f"sparsity must be in [0, 1), got {sparsity}")
    return min(round(sparsity * numel), numel)


def _mask_pruning(weight: Tensor, order: Tensor, count: int) -> Tensor:
    """A mask of ``weight``'s shape pruning the first ``count`` flat positions of ``order``."""
    mask = torch.ones(weight.numel(), dtype=weight.dtype, device=weight.device)
    mask[order[:count]] = 0
    return mask.view_as(weight)


def magnitude_mask(weight: Tensor, sparsity: float) -> Tensor:
    """Prune exactly round(sparsity * numel) smallest |w|; equal magnitudes: lower index first."""
    order = torch.sort(weight.detach().abs().flatten(), stable=True).indices
    return _mask_pruning(weight, order, pruned_count(weight.numel(), sparsity))


def random_mask(weight: Tensor, sparsity: float, generator: torch.Generator | None = None) -> Tensor:
    """Prune exactly round(sparsity * numel) positions chosen uniformly at random (a baseline)."""
    order = torch.randperm(weight.numel(), generator=generator).to(weight.device)
    return _mask_pruning(weight, order, pruned_count(weight.numel(), sparsity))


def std_mask(weight: Tensor, factor: float) -> Tensor:
    """Prune |w| < factor * std(w) (Han et al. 2015; std with Bessel's correction)."""
    if not (factor >= 0 and math.isfinite(factor)):
        raise UserError(f"std factor must be a finite number >= 0, got {factor}")
    weight = weight.detach()
    return (weight.abs() >= factor * weight.std()).to(weight.dtype)


def _flat(weights: dict[str, Tensor]) -> Tensor:
    return torch.cat([w.detach().flatten() for w in weights.values()])


def _split(flat_mask: Tensor, weights: dict[str, Tensor]) -> dict[str, Tensor]:
    parts = flat_mask.split([w.numel() for w in weights.values()])
    return {name: part.view_as(w) for (name, w), part in zip(weights.items(), parts)}


def global_magnitude_masks(weights: dict[str, Tensor], sparsity: float,
                           max_layer_sparsity: float = 1.0) -> dict[str, Tensor]:
    """One magnitude threshold over all ``weights`` together: exactly round(sparsity * total)
    pruned in all; ties broken by (layer order, position).

    ``max_layer_sparsity`` c < 1 caps every layer at round(c * numel) pruned weights: the
    smallest |w| over all layers are pruned until a layer reaches its cap, then only the others
    (so a large late layer cannot be emptied by a global threshold).
    """
    if max_layer_sparsity >= 1.0:
        return _split(magnitude_mask(_flat(weights), sparsity), weights)
    if not max_layer_sparsity > 0.0:
        raise UserError(f"max layer sparsity must be in (0, 1], got {max_layer_sparsity}")
    total = sum(w.numel() for w in weights.values())
    values, positions, offset = [], [], 0
    for w in weights.values():  # a layer's candidates: its round(c * numel) smallest |w|
        order = torch.sort(w.detach().abs().flatten(), stable=True)
        cap = pruned_count(w.numel(), max_layer_sparsity)
        values.append(order.values[:cap])
        positions.append(order.indices[:cap] + offset)
        offset += w.numel()
    count, candidates = pruned_count(total, sparsity), torch.cat(values)
    if count > candidates.numel():
        raise UserError(f"a global sparsity of {sparsity} cannot be reached when no layer may exceed "
                        f"{max_layer_sparsity}: at most {candidates.numel() / total:.4f}")
    chosen = torch.cat(positions)[torch.sort(candidates, stable=True).indices[:count]]
    flat = torch.ones(total, dtype=candidates.dtype, device=candidates.device)
    flat[chosen] = 0
    return _split(flat, weights)


def mask_method(criterion: str, scope: str = "layer", seed: int = 0,
                max_layer_sparsity: float = 1.0) -> MaskMethod:
    """The mask function of ``criterion`` applied per layer or over all layers (``scope``);
    ``max_layer_sparsity`` < 1 caps each layer under the global magnitude threshold."""
    if criterion not in CRITERIA:
        raise UserError(f"unknown criterion {criterion!r}; choose one of: {', '.join(CRITERIA)}")
    if scope not in SCOPES:
        raise UserError(f"unknown scope {scope!r}; choose one of: {', '.join(SCOPES)}")
    if max_layer_sparsity < 1.0 and (criterion, scope) != ("magnitude", "global"):
        raise UserError("a max layer sparsity applies to the global magnitude criterion only")
    generator = torch.Generator().manual_seed(seed)
    single = {"magnitude": magnitude_mask, "std": std_mask,
              "random": lambda w, q: random_mask(w, q, generator)}[criterion]

    def per_layer(weights: dict[str, Tensor], amount: float) -> dict[str, Tensor]:
        return {name: single(w, amount) for name, w in weights.items()}

    def over_all(weights: dict[str, Tensor], amount: float) -> dict[str, Tensor]:
        if criterion == "magnitude":
            return global_magnitude_masks(weights, amount, max_layer_sparsity)
        return _split(single(_flat(weights), amount), weights)

    return per_layer if scope == "layer" else over_all
