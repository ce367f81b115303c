"""Model zoo registry: names -> builders, and the architecture spec stored in model files.

A zoo builder is called as ``builder(num_classes=..., in_channels=..., image_size=..., **kwargs)``
and returns an ordinary ``nn.Module`` taking float inputs of shape (N, C, H, W).
The :class:`ArchSpec` (name + JSON-serialisable keyword arguments) is everything needed to
rebuild the module, so a model file never has to pickle Python objects. Its name is a zoo name
or a builder outside the zoo, ``PKG.MODULE:FUNCTION`` (:mod:`deepshrink.models.builders`),
imported only when allowed.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from torch import nn

from deepshrink.errors import UserError
from deepshrink.models.builders import (builder_package, builder_parameters, check_allow_list, check_builder_name, is_builder_name,
                                        resolve_builder)
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
    """What to build: a zoo name or a builder ``PKG.MODULE:FUNCTION``, the builder's keyword
    arguments (JSON values only), plus optional module overrides (resized layers, see
    :mod:`deepshrink.models.overrides`). ``resolved``: the builder function once a caller allowed
    it (:func:`resolve_spec`); never stored, never compared."""

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    resolved: Builder | None = field(default=None, compare=False, repr=False)

    @property
    def is_builder(self) -> bool:
        """Whether ``name`` is a builder outside the zoo (``PKG.MODULE:FUNCTION``)."""
        return is_builder_name(self.name)

    def to_dict(self) -> dict[str, Any]:
        data = {"builder" if self.is_builder else "name": self.name, "kwargs": dict(self.kwargs)}
        if self.overrides:
            data["overrides"] = {name: dict(args) for name, args in self.overrides.items()}
        return data

    @classmethod
    def from_dict(cls, data: Any) -> "ArchSpec":
        """The spec of a model file's ``arch``: ``{"name": zoo name}`` or ``{"builder": PKG.MODULE:FUNCTION}``
        (checked, not imported), with ``kwargs`` and ``overrides``."""
        if not isinstance(data, dict) or ("name" in data) == ("builder" in data):
            raise UserError("architecture spec must be an object with a zoo 'name' or a 'builder'")
        if "builder" in data:
            name = check_builder_name(data["builder"])
        elif not isinstance(data["name"], str) or is_builder_name(data["name"]):
            raise UserError("architecture spec 'name' must be a zoo name (a builder is recorded as 'builder')")
        else:
            name = data["name"]
        kwargs = data.get("kwargs", {})
        if not isinstance(kwargs, dict):
            raise UserError("architecture spec 'kwargs' must be an object")
        overrides = data.get("overrides", {})
        if not isinstance(overrides, dict) or not all(isinstance(v, dict) for v in overrides.values()):
            raise UserError("architecture spec 'overrides' must map module names to objects")
        return cls(name, dict(kwargs), {name: dict(args) for name, args in overrides.items()})


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
    A builder ``PKG.MODULE:FUNCTION`` named here counts as allowed: see :func:`builder_spec`.
    """
    if is_builder_name(name):
        return builder_spec(name, num_classes=num_classes, in_channels=in_channels, image_size=image_size, **kwargs)
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


def builder_spec(name: str, *, num_classes: int | None = 10, in_channels: int | None = None,
                 image_size: int | None = None, **kwargs: Any) -> ArchSpec:
    """Spec (resolved) for the builder ``name`` = ``PKG.MODULE:FUNCTION``, which the caller names
    and so allows. ``num_classes``, ``in_channels`` and ``image_size`` are passed only to a
    builder whose signature names them (``torchvision.models:resnet18`` takes ``num_classes``
    alone); ``kwargs`` must be JSON values the builder takes."""
    builder = resolve_builder(name, (builder_package(check_builder_name(name)),))
    named, _ = builder_parameters(builder)
    sizes = {"num_classes": num_classes, "in_channels": in_channels, "image_size": image_size}
    full = {**{k: int(v) for k, v in sizes.items() if k in named and v is not None}, **kwargs}
    try:
        json.dumps(full)
    except (TypeError, ValueError):
        raise UserError(f"options of builder {name!r} must be JSON values, got {full}") from None
    spec = ArchSpec(name, full, resolved=builder)
    _check_builder_kwargs(spec, builder)
    return spec


def resolve_spec(spec: ArchSpec, allow_builders=(), source: str | None = None) -> ArchSpec:
    """``spec`` with its builder imported (:func:`~deepshrink.models.builders.resolve_builder`:
    only from the ``allow_builders`` packages), so :func:`build_model` builds it; zoo specs and
    resolved ones are returned as they are."""
    if not spec.is_builder or spec.resolved is not None:
        check_allow_list(allow_builders)
        return spec
    return replace(spec, resolved=resolve_builder(spec.name, allow_builders, source))


def build_model(spec: ArchSpec | None, allow_builders=()) -> nn.Module:
    """Build the module described by ``spec`` (applying its overrides). A builder spec not yet
    resolved is imported only from the ``allow_builders`` packages (see :func:`resolve_spec`)."""
    if spec is None:
        raise UserError("the model file holds no architecture (saved with info=None): "
                        "load it into a fresh instance of its class, load_model(path, model=...)")
    if spec.is_builder:
        builder = resolve_spec(spec, allow_builders).resolved
        _check_builder_kwargs(spec, builder)
    else:
        entry = get_entry(spec.name)
        _check_kwargs(entry, spec.kwargs)
        builder = entry.builder
    try:
        model = builder(**spec.kwargs, **_wrapper_permission(spec, builder, allow_builders))
    except UserError:  # already one line for the user (a ValueError too, so before the next clause)
        raise
    except (TypeError, ValueError) as exc:
        raise UserError(f"cannot build {spec.name} with {spec.kwargs}: {exc}") from None
    if not isinstance(model, nn.Module):
        raise UserError(f"builder {spec.name!r} returned a {type(model).__name__}, not a torch.nn.Module")
    return apply_overrides(model, spec.overrides) if spec.overrides else model


def _check_builder_kwargs(spec: ArchSpec, builder: Builder) -> None:
    named, var_keyword = builder_parameters(builder)
    unknown = sorted(set(spec.kwargs) - named)
    if unknown and not var_keyword:
        raise UserError(f"builder {spec.name!r} has no option {', '.join(unknown)}; "
                        f"it takes: {', '.join(sorted(named)) or 'none'}")


def _wrapper_permission(spec: ArchSpec, builder: Builder, allow_builders) -> dict[str, Any]:
    """``{"allow_builders": ...}`` for a registered wrapper of another spec (its builder takes
    ``allow_builders``, e.g. early exits around a builder backbone), so the permission reaches
    the inner spec; nothing for other builders. A file can never set it: it is not a JSON option."""
    if spec.is_builder or "allow_builders" not in inspect.signature(builder).parameters:
        return {}
    return {"allow_builders": tuple(allow_builders)}


def _check_kwargs(entry: ModelEntry, kwargs: dict[str, Any]) -> None:
    if "allow_builders" in kwargs:
        raise UserError(f"model {entry.name!r}: allow_builders is a permission of the caller, not an option of a file")
    params = inspect.signature(entry.builder).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise UserError(
            f"model {entry.name!r} has no option {', '.join(unknown)}; "
            f"it takes: {', '.join(params)}"
        )
