"""Per-layer sparsity of a model, read from the effective weights (through masks)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from torch import nn
from torch.nn.utils import parametrize

from deepshrink.models.attach import effective_tensors


@dataclass(frozen=True)
class LayerSparsity:
    """Parameter elements of one module's own tensors (weight, bias, ...), and how many are 0.0."""

    name: str
    type: str
    params: int
    nonzero: int

    @property
    def sparsity(self) -> float:
        """Fraction of elements that are exactly 0.0 (0..1)."""
        return 1.0 - self.nonzero / self.params if self.params else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "sparsity": self.sparsity}


def _type_name(module: nn.Module) -> str:
    """The module's class name (that of the original class for a parametrized module)."""
    cls = type(module).__bases__[0] if parametrize.is_parametrized(module) else type(module)
    return cls.__name__


def layer_sparsity(model: nn.Module) -> list[LayerSparsity]:
    """One row per module that owns parameters, in module order (the root as ``(model)``)."""
    rows = []
    for name, module in model.named_modules():
        if "parametrizations" in name.split("."):
            continue
        tensors = list(effective_tensors(module).values())
        if tensors:
            rows.append(LayerSparsity(name or "(model)", _type_name(module),
                                      sum(t.numel() for t in tensors),
                                      sum(int((t.detach() != 0).sum()) for t in tensors)))
    return rows


def sparsity_summary(model: nn.Module) -> dict[str, Any]:
    """``{"layers": [row dicts], "total": {"params", "nonzero", "sparsity"}}``."""
    rows = layer_sparsity(model)
    params, nonzero = sum(r.params for r in rows), sum(r.nonzero for r in rows)
    total = {"params": params, "nonzero": nonzero, "sparsity": 1.0 - nonzero / params if params else 0.0}
    return {"layers": [r.to_dict() for r in rows], "total": total}
