"""The architecture spec of a structurally pruned model: the zoo spec plus module overrides."""

from __future__ import annotations

from typing import Iterable

from torch import nn

from deepshrink.models.overrides import describe_modules
from deepshrink.models.registry import ArchSpec

__all__ = ["pruned_spec"]


def pruned_spec(spec: ArchSpec, model: nn.Module, resized: Iterable[str]) -> ArchSpec:
    """``spec`` with overrides recording the current shape of the ``resized`` modules of ``model``
    (earlier overrides kept), so ``build_model`` rebuilds the pruned architecture."""
    return ArchSpec(spec.name, dict(spec.kwargs), {**spec.overrides, **describe_modules(model, resized)})
