"""Optimisers for the training engine."""

from __future__ import annotations

import torch
from torch import nn

from deepshrink.errors import UserError

OPTIMIZERS = ("sgd", "adam", "adamw")


def build_optimizer(model: nn.Module, name: str, *, lr: float, momentum: float = 0.9,
                    weight_decay: float = 0.0, nesterov: bool = False) -> torch.optim.Optimizer:
    """SGD (with momentum/Nesterov), Adam or AdamW over the model's trainable parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay,
                               nesterov=nesterov and momentum > 0)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise UserError(f"unknown optimizer {name!r}; choose one of: {', '.join(OPTIMIZERS)}")
