"""Sparsity-inducing regularisers as training hooks.

Penalties add ``strength * sum over modules of penalty(module.weight)`` to the loss; the weight
is the effective one (through masks). :class:`ProximalL1` is the alternative to L1 in the loss:
after each optimiser step it soft-thresholds the weights by ``lr * strength``.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepshrink.errors import UserError
from deepshrink.prune.mask import underlying_weight
from deepshrink.train import TrainHook

GROUPS = ("filter", "channel")


def _check_strength(strength: float) -> float:
    if not (strength >= 0 and math.isfinite(strength)):
        raise UserError(f"regularisation strength must be a finite number >= 0, got {strength}")
    return float(strength)


class WeightPenalty(TrainHook):
    """Base: loss + strength * sum(penalty(m.weight) for m in modules)."""

    def __init__(self, modules: Sequence[nn.Module], strength: float):
        self.modules = list(modules)
        self.strength = _check_strength(strength)

    def penalty(self, weight: Tensor) -> Tensor:
        raise NotImplementedError

    def value(self) -> Tensor:
        """The summed penalty (without the strength), differentiable."""
        return sum(self.penalty(m.weight) for m in self.modules)

    def loss(self, trainer, inputs, targets, outputs, loss: Tensor) -> Tensor:
        return loss + self.strength * self.value()


class L1(WeightPenalty):
    """sum |w|."""

    def penalty(self, weight: Tensor) -> Tensor:
        return weight.abs().sum()


class L2(WeightPenalty):
    """sum w^2 (no factor 1/2)."""

    def penalty(self, weight: Tensor) -> Tensor:
        return weight.pow(2).sum()


class GroupLasso(WeightPenalty):
    """sum over groups g of ||W_g||_2; groups are output filters W[o] (``"filter"``) or input
    channels W[:, i] (``"channel"``), for Conv2d (O, I, kh, kw) and Linear (O, I) weights."""

    def __init__(self, modules: Sequence[nn.Module], strength: float, group: str = "filter"):
        super().__init__(modules, strength)
        if group not in GROUPS:
            raise UserError(f"unknown group {group!r}; choose one of: {', '.join(GROUPS)}")
        self.group = group

    def penalty(self, weight: Tensor) -> Tensor:
        dims = [d for d in range(weight.dim()) if d != (0 if self.group == "filter" else 1)]
        return torch.linalg.vector_norm(weight, dim=dims).sum()


class DeepHoyer(WeightPenalty):
    """Hoyer-square (Yang et al. 2020): (sum |w|)^2 / sum w^2 per layer; scale-invariant."""

    def penalty(self, weight: Tensor) -> Tensor:
        return weight.abs().sum().pow(2) / weight.pow(2).sum().clamp_min(torch.finfo(weight.dtype).tiny)


class TrimmedL1(WeightPenalty):
    """sum |w| over all but the ``keep`` largest-magnitude weights of each layer."""

    def __init__(self, modules: Sequence[nn.Module], strength: float, keep: int):
        super().__init__(modules, strength)
        if keep < 0:
            raise UserError(f"trimmed L1: keep must be >= 0, got {keep}")
        self.keep = keep

    def penalty(self, weight: Tensor) -> Tensor:
        rest = weight.numel() - self.keep
        if rest <= 0:
            return weight.sum() * 0
        return torch.topk(weight.abs().flatten(), rest, largest=False).values.sum()


def batchnorm_layers(model: nn.Module) -> list[nn.Module]:
    """Every affine BatchNorm layer of ``model`` (their weights are the scales gamma)."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine]


class BatchNormL1(L1):
    """Network slimming (Liu et al. 2017): sum |gamma| over the BatchNorm layers of ``model``."""

    def __init__(self, model: nn.Module, strength: float):
        super().__init__(batchnorm_layers(model), strength)


class ProximalL1(TrainHook):
    """After each step: w <- sign(w) * max(|w| - lr * strength, 0) on the weights of ``modules``
    (behind any mask), the proximal step of strength * sum |w|."""

    def __init__(self, modules: Sequence[nn.Module], strength: float):
        self.modules = list(modules)
        self.strength = _check_strength(strength)

    @torch.no_grad()
    def after_step(self, trainer) -> None:
        threshold = trainer.lr * self.strength
        for module in self.modules:
            weight = underlying_weight(module)
            weight.copy_(F.softshrink(weight, threshold))
