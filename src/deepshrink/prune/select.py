"""Which layers the compression verbs touch — the one place the default is defined.

By default ``prune_``, ``quantize_`` and ``prune_channels`` act on every ``nn.Conv2d`` and
``nn.Linear`` (ViT projections too) except the *edge layers*: the first convolution (the stem)
and the classifier, which are small and sensitive. A model may name its own edge layers with an
``edge_layers()`` method (early-exit models do). A ``filter_fn(module, fqn) -> bool`` replaces
this default: it is asked about every Conv2d/Linear, edge layers included. ``exclude`` globs
(fnmatch on the qualified name) then remove layers from either selection.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Callable, Sequence

from torch import nn

from deepshrink.errors import ConfigError

PRUNABLE = (nn.Conv2d, nn.Linear)

# filter_fn(module, fully qualified name) -> whether a verb acts on that layer (torchao's convention)
FilterFn = Callable[[nn.Module, str], bool]


def prunable_layers(model: nn.Module, exclude: Sequence[str] = (), *, exclude_first_last: bool = True,
                    filter_fn: FilterFn | None = None, owner: str = "config") -> dict[str, nn.Module]:
    """Qualified name -> module of the selected Conv2d/Linear layers, in module order: those
    ``filter_fn`` accepts, or by default all but the edge layers (:func:`edge_layers`; all with
    ``exclude_first_last`` False), minus those matching a glob of ``exclude`` (fnmatch,
    case-sensitive). A glob matching no layer is an error naming ``owner``'s ``exclude`` field."""
    layers = {name: m for name, m in model.named_modules()
              if isinstance(m, PRUNABLE) and "parametrizations" not in name.split(".")}
    names = list(layers)
    if filter_fn is not None:
        skipped = {name for name, m in layers.items() if not filter_fn(m, name)}
    else:
        skipped = edge_layers(model, names) if exclude_first_last else set()
    for pattern in exclude:
        matched = [name for name in names if fnmatchcase(name, pattern)]
        if not matched:
            raise ConfigError(owner, "exclude", f"pattern {pattern!r} matches no Conv2d/Linear layer "
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
