"""Which layers fine-grained pruning touches: Conv2d and Linear weights (ViT projections too)."""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Sequence

from torch import nn

from deepshrink.errors import UserError

PRUNABLE = (nn.Conv2d, nn.Linear)


def prunable_layers(model: nn.Module, exclude: Sequence[str] = (), *,
                    exclude_first_last: bool = True) -> dict[str, nn.Module]:
    """Qualified name -> module of every Conv2d/Linear in module order, minus those whose name
    matches a glob of ``exclude`` (fnmatch, case-sensitive) and, by default, the edge layers
    (:func:`edge_layers`: the stem convolution and the classifier)."""
    layers = {name: m for name, m in model.named_modules()
              if isinstance(m, PRUNABLE) and "parametrizations" not in name.split(".")}
    names = list(layers)
    skipped = edge_layers(model, names) if exclude_first_last else set()
    for pattern in exclude:
        matched = [name for name in names if fnmatchcase(name, pattern)]
        if not matched:
            raise UserError(f"--exclude {pattern!r} matches no Conv2d/Linear layer "
                            f"(layers: {', '.join(names[:4])}{', ...' if len(names) > 4 else ''})")
        skipped.update(matched)
    return {name: m for name, m in layers.items() if name not in skipped}


def edge_layers(model: nn.Module, names: Sequence[str]) -> set[str]:
    """The layers kept dense/float by default: what ``model.edge_layers()`` names when the
    model defines it (e.g. an early-exit model: the backbone's stem and classifier and each
    exit head's classifier), else the first and the last of ``names``."""
    declared = getattr(model, "edge_layers", None)
    if callable(declared):
        return set(declared())
    return set(names[:1]) | set(names[-1:])
