"""Parameter counts."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class ParamCount:
    total: int     # elements of all parameters
    nonzero: int   # elements that are not exactly 0.0


def count_params(model: nn.Module) -> ParamCount:
    """Count parameter elements of ``model`` (buffers such as BatchNorm statistics excluded)."""
    total = nonzero = 0
    for param in model.parameters():
        total += param.numel()
        nonzero += int((param.detach() != 0).sum())
    return ParamCount(total, nonzero)
