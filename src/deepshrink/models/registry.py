"""Model zoo registry: names -> builders, and the architecture spec stored in model files.

A builder is called as ``builder(num_classes=..., in_channels=..., image_size=..., **kwargs)``
and returns an ordinary ``nn.Module`` taking float inputs of shape (N, C, H, W).
The :class:`ArchSpec` (name + JSON-serialisable keyword arguments) is everything needed to
rebuild the module, so a model file never has to pickle Python objects.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass, field
from typing import Any, Callable

from torch import nn

from deepshrink.errors import UserError
from deepshrink.models.overrides import apply_overrides

Builder = Callable[..., nn.Module]


@dataclass(frozen=True)
class ModelEntry:
    """One registry entry: the builder, a one-line description, the default input (C, H, W);
    ``zoo`` is False for wrappers of another spec (early exits), built only from model files."""

    name: str
    builder: Builder
    description: str
    default_input: tuple[int, int, int]
    zoo: bool = True


@dataclass(frozen=True)
class ArchSpec:
    """What to build: a zoo name and the builder's keyword arguments (JSON values only), plus
    optional module overrides (resized layers, see :mod:`deepshrink.models.overrides`)."""

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = {"name": self.name, "kwargs": dict(self.kwargs)}
        if self.overrides:
            data["overrides"] = {name: dict(args) for name, args in self.overrides.items()}
        return data

    @classmethod
    def from_dict(cls, data: Any) -> "ArchSpec":
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            raise UserError("architecture spec must be an object with a string 'name'")
        kwargs = data.get("kwargs", {})
        if not isinstance(kwargs, dict):
            raise UserError("architecture spec 'kwargs' must be an object")
        overrides = data.get("overrides", {})
        if not isinstance(overrides, dict) or not all(isinstance(v, dict) for v in overrides.values()):
            raise UserError("architecture spec 'overrides' must map module names to objects")
        return cls(data["name"], dict(kwargs), {name: dict(args) for name, args in overrides.items()})


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, *, description: str, default_input: tuple[int, int, int], zoo: bool = True):
    """Decorator adding a builder to the registry under ``name`` (listed in the zoo unless ``zoo=False``)."""

    def decorate(builder: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = ModelEntry(name, builder, description, tuple(default_input), zoo)
        return builder

    return decorate


def model_names() -> list[str]:
    """All zoo names (what ``train --model`` offers), sorted; wrappers registered with ``zoo=False`` are left out."""
    return sorted(name for name, entry in _REGISTRY.items() if entry.zoo)


def get_entry(name: str) -> ModelEntry:
    """The zoo entry for ``name``; a :class:`UserError` listing the names if unknown."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UserError(f"unknown model {name!r}; choose one of: {', '.join(model_names())}") from None


def make_spec(
    name: str,
    *,
    num_classes: int = 10,
    in_channels: int | None = None,
    image_size: int | None = None,
    **kwargs: Any,
) -> ArchSpec:
    """Spec for zoo model ``name`` on inputs of ``in_channels`` x ``image_size`` x ``image_size``.

    Missing input dimensions default to the entry's ``default_input``. The spec is checked by
    building nothing: only the keyword names are validated against the builder's signature.
    """
    entry = get_entry(name)
    channels, height, _ = entry.default_input
    full = {
        "num_classes": int(num_classes),
        "in_channels": int(in_channels if in_channels is not None else channels),
        "image_size": int(image_size if image_size is not None else height),
        **kwargs,
    }
    _check_kwargs(entry, full)
    json.dumps(full)  # must be plain data
    return ArchSpec(name, full)


def build_model(spec: ArchSpec) -> nn.Module:
    """Build the module described by ``spec`` (applying its overrides)."""
    entry = get_entry(spec.name)
    _check_kwargs(entry, spec.kwargs)
    try:
        model = entry.builder(**spec.kwargs)
    except (TypeError, ValueError) as exc:
        raise UserError(f"cannot build {spec.name} with {spec.kwargs}: {exc}") from None
    return apply_overrides(model, spec.overrides) if spec.overrides else model


def _check_kwargs(entry: ModelEntry, kwargs: dict[str, Any]) -> None:
    params = inspect.signature(entry.builder).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise UserError(
            f"model {entry.name!r} has no option {', '.join(unknown)}; "
            f"it takes: {', '.join(params)}"
        )
