"""AdderNet's adaptive learning rate (Chen et al. 2020, eq. 12-13).

The gradients of adder layers are far smaller than those of convolutions (and shrink with
depth), so each adder layer l gets its own rate α_l = η·sqrt(k)/‖∇L(W_l)‖₂, k being the
number of elements of W_l. The hook multiplies each adder layer's weight gradient by α_l
after the backward pass; the optimiser then applies the global learning rate γ as usual, so
a plain SGD step changes W_l by γ·η·sqrt(k) in L2 norm (an RMS of γ·η per element).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn.utils import parametrize

from deepshrink.errors import UserError
from deepshrink.models.layers import AdderConv2d
from deepshrink.train.hooks import TrainHook

if TYPE_CHECKING:
    from deepshrink.train.trainer import Trainer

__all__ = ["AdderLearningRate", "adder_weights", "scale_adder_gradients"]

DEFAULT_ETA = 0.1  # the paper's η; the authors' released code uses 0.2 (it divides by 5)


def adder_weights(model: nn.Module) -> list[nn.Parameter]:
    """The trainable weight tensor of every adder layer (the original under a parametrization)."""
    weights = []
    for module in model.modules():
        if isinstance(module, AdderConv2d):
            weights.append(module.parametrizations.weight.original
                           if parametrize.is_parametrized(module, "weight") else module.weight)
    return weights


@torch.no_grad()
def scale_adder_gradients(model: nn.Module, eta: float = DEFAULT_ETA) -> None:
    """Multiply each adder weight gradient g (in place) by η·sqrt(g.numel())/‖g‖₂; zero gradients stay zero."""
    for weight in adder_weights(model):
        grad = weight.grad
        if grad is None:
            continue
        norm = torch.linalg.vector_norm(grad)
        grad.mul_(torch.where(norm > 0, eta * math.sqrt(grad.numel()) / norm, 0.0))


class AdderLearningRate(TrainHook):
    """Applies :func:`scale_adder_gradients` after every backward pass, before the optimiser steps."""

    def __init__(self, eta: float = DEFAULT_ETA):
        if not eta > 0:
            raise UserError(f"the adder learning-rate factor eta must be > 0, got {eta}")
        self.eta = eta

    def after_backward(self, trainer: "Trainer") -> None:
        scale_adder_gradients(trainer.model, self.eta)
