"""Module overrides: a zoo model whose layers were resized (by structured pruning) as plain data.

An override maps a module's qualified name to the constructor arguments of its replacement,
e.g. ``{"layer1.0.conv1": {"type": "Conv2d", "in_channels": 16, "out_channels": 10, ...}}``.
:func:`describe_modules` records them from a resized model; :func:`apply_overrides` replaces
those modules of a freshly built zoo model, so a model file of a pruned model reloads through
the registry alone (the weights are loaded afterwards). Supported types: ``Conv2d``, ``Linear``,
``BatchNorm1d``/``BatchNorm2d`` and any class registered with :func:`register_override_type`
that has a ``constructor_args() -> dict`` method.

A model file without an architecture (the user's own class, rebuilt by the user) cannot know
which modules were resized, so it records every overridable module (:func:`describe_all`);
loading replaces only those whose fresh instance differs (:func:`apply_differing`).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from torch import nn
from torch.nn.utils.parametrize import type_before_parametrizations

from deepshrink.errors import UserError

__all__ = ["apply_differing", "apply_overrides", "describe_all", "describe_module", "describe_modules",
           "register_override_type"]


def _conv_args(conv: nn.Conv2d) -> dict[str, Any]:
    padding = conv.padding if isinstance(conv.padding, str) else list(conv.padding)
    return {"in_channels": conv.in_channels, "out_channels": conv.out_channels,
            "kernel_size": list(conv.kernel_size), "stride": list(conv.stride), "padding": padding,
            "dilation": list(conv.dilation), "groups": conv.groups, "bias": conv.bias is not None,
            "padding_mode": conv.padding_mode}


def _linear_args(linear: nn.Linear) -> dict[str, Any]:
    return {"in_features": linear.in_features, "out_features": linear.out_features,
            "bias": linear.bias is not None}


def _batchnorm_args(bn: nn.modules.batchnorm._BatchNorm) -> dict[str, Any]:
    return {"num_features": bn.num_features, "eps": bn.eps, "momentum": bn.momentum,
            "affine": bn.affine, "track_running_stats": bn.track_running_stats}


_TYPES: dict[str, tuple[type[nn.Module], Callable[[nn.Module], dict[str, Any]]]] = {
    "Conv2d": (nn.Conv2d, _conv_args),
    "Linear": (nn.Linear, _linear_args),
    "BatchNorm1d": (nn.BatchNorm1d, _batchnorm_args),
    "BatchNorm2d": (nn.BatchNorm2d, _batchnorm_args),
}


def register_override_type(cls: type[nn.Module]) -> type[nn.Module]:
    """Allow overrides of modules of ``cls`` (which must define ``constructor_args()``)."""
    if not callable(getattr(cls, "constructor_args", None)):
        raise TypeError(f"{cls.__name__} needs a constructor_args() method to be overridable")
    _TYPES[cls.__name__] = (cls, lambda module: module.constructor_args())
    return cls


def _overridable(module: nn.Module) -> bool:
    """Whether ``module`` is exactly one of the overridable types (parametrized or not)."""
    cls = type_before_parametrizations(module)
    return cls.__name__ in _TYPES and cls is _TYPES[cls.__name__][0]


def describe_module(module: nn.Module) -> dict[str, Any]:
    """``{"type": class name, **constructor arguments}`` of ``module`` (JSON values)."""
    name = type_before_parametrizations(module).__name__
    if not _overridable(module):
        raise ValueError(f"modules of type {name} cannot be recorded as overrides")
    return {"type": name, **_TYPES[name][1](module)}


def describe_all(model: nn.Module) -> dict[str, dict[str, Any]]:
    """Overrides recording every overridable module of ``model`` (what a model file without an
    architecture keeps, since it cannot tell which were resized)."""
    return {name: describe_module(module) for name, module in model.named_modules() if name and _overridable(module)}


def apply_differing(model: nn.Module, overrides: dict[str, dict[str, Any]]) -> nn.Module:
    """Apply those of ``overrides`` that differ from ``model``'s modules (a freshly built instance
    of the class the overrides were recorded from); returns ``model``. A named module that is
    missing or of another type is a :class:`UserError`."""
    differing = {}
    for name, spec in overrides.items():
        try:
            module = model.get_submodule(name)
        except AttributeError:
            raise UserError(f"the model has no module {name!r}, which the file records: "
                            "is it an instance of the class that was saved?") from None
        kind = spec.get("type") if isinstance(spec, dict) else None
        if type_before_parametrizations(module).__name__ != kind:
            raise UserError(f"module {name!r} is a {type(module).__name__} but the file records a {kind}: "
                            "is the model an instance of the class that was saved?")
        if not _overridable(module) or describe_module(module) != spec:
            differing[name] = spec
    return apply_overrides(model, differing)


def describe_modules(model: nn.Module, names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Overrides recording the current shape of the modules ``names`` of ``model``."""
    return {name: describe_module(model.get_submodule(name)) for name in sorted(names)}


def apply_overrides(model: nn.Module, overrides: dict[str, dict[str, Any]]) -> nn.Module:
    """Replace the modules named in ``overrides`` by new ones built from their arguments
    (fresh parameters, in the replaced module's training mode); returns ``model``."""
    for name, spec in overrides.items():
        args = dict(spec) if isinstance(spec, dict) else {}
        kind = args.pop("type", None)
        if kind not in _TYPES:
            raise UserError(f"override of {name!r}: unknown module type {kind!r}")
        parent_name, _, attr = name.rpartition(".")
        try:
            parent = model.get_submodule(parent_name)
            old = getattr(parent, attr)
        except AttributeError:
            raise UserError(f"override names a module the model does not have: {name!r}") from None
        try:
            new = _TYPES[kind][0](**args)
        except (TypeError, ValueError) as exc:
            raise UserError(f"override of {name!r}: cannot build {kind} from {args}: {exc}") from None
        setattr(parent, attr, new.train(old.training))
    return model
