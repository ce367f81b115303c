"""Parametrizations that stages attach to a model's tensors, and how model files keep them.

Pruning masks and quantizers are ``torch.nn.utils.parametrize`` parametrizations, so a
compressed model stays an ordinary ``nn.Module``. To survive a save/load round trip each
parametrization class is registered under a ``kind`` name and describes itself as JSON data:

    @register_parametrization("mask")
    class Mask(nn.Module):
        def spec(self) -> dict: ...                      # JSON-serialisable constructor args
        @classmethod
        def from_spec(cls, tensor, args) -> "Mask": ...  # a placeholder of the right shapes

Buffers and parameters of a parametrization are in the state dict, so they are restored by
``load_state_dict`` after :func:`restore_parametrizations` has re-attached placeholders.
"""

from __future__ import annotations

import copy
import importlib
from typing import Any, Callable

import torch
from torch import nn
from torch.nn.utils import parametrize

from deepshrink.errors import UserError

# Packages that register parametrization kinds when imported.
PROVIDERS = ("deepshrink.prune", "deepshrink.quant")

_KINDS: dict[str, type[nn.Module]] = {}


def register_parametrization(kind: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator: make parametrization ``cls`` saveable under the name ``kind``."""

    def decorate(cls: type[nn.Module]) -> type[nn.Module]:
        if _KINDS.get(kind, cls) is not cls:
            raise ValueError(f"parametrization kind {kind!r} registered twice")
        cls.kind = kind
        _KINDS[kind] = cls
        return cls

    return decorate


def parametrization_class(kind: str) -> type[nn.Module]:
    """The class registered as ``kind`` (importing the stage packages on first use)."""
    if kind not in _KINDS:
        for provider in PROVIDERS:
            importlib.import_module(provider)
    try:
        return _KINDS[kind]
    except KeyError:
        raise UserError(f"model file uses parametrization {kind!r}, which this deepshrink does not know") from None


def describe_parametrizations(model: nn.Module) -> list[dict[str, Any]]:
    """One record per attached parametrization, in attachment order:
    ``{"module": qualified name, "tensor": "weight", "kind": ..., "args": {...}}``."""
    records = []
    for name, module in model.named_modules():
        if not parametrize.is_parametrized(module):
            continue
        for tensor_name, chain in module.parametrizations.items():
            for param in chain:
                kind = getattr(type(param), "kind", None)
                if kind is None:
                    raise ValueError(f"{type(param).__name__} on {name}.{tensor_name} is not registered; "
                                     "decorate it with @register_parametrization")
                records.append({"module": name, "tensor": tensor_name, "kind": kind, "args": param.spec()})
    return records


def restore_parametrizations(model: nn.Module, records: list[dict[str, Any]]) -> None:
    """Re-attach placeholder parametrizations described by ``records`` (from a model file)."""
    modules = dict(model.named_modules())
    for record in records:
        try:
            module = modules[record["module"]]
            tensor_name, kind, args = record["tensor"], record["kind"], record.get("args", {})
            tensor = getattr(module, tensor_name)
        except (KeyError, AttributeError, TypeError):
            raise UserError(f"model file attaches a parametrization to {record!r}, "
                            "which its architecture does not have") from None
        param = parametrization_class(kind).from_spec(tensor.detach(), args)
        parametrize.register_parametrization(module, tensor_name, param, unsafe=True)


def effective_tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    """The module's own parameters by name, read through any parametrizations (the values the
    forward pass uses: masked, quantized), detached."""
    names = [name for name, p in module._parameters.items() if p is not None]
    if parametrize.is_parametrized(module):
        names += list(module.parametrizations)
    return {name: getattr(module, name).detach() for name in names}


def copy_model(model: nn.Module) -> nn.Module:
    """``copy.deepcopy(model)`` that is safe to un-parametrize.

    ``deepcopy`` keeps sharing the dynamically created ``Parametrized*`` classes between the
    original and the copy, so removing a parametrization from the copy would delete the
    property from the original's class too. Each parametrized module of the copy gets a class
    of its own.
    """
    clone = copy.deepcopy(model)
    for module in clone.modules():
        if parametrize.is_parametrized(module):
            cls = type(module)
            namespace = {k: v for k, v in cls.__dict__.items() if k not in ("__dict__", "__weakref__")}
            module.__class__ = type(cls.__name__, cls.__bases__, namespace)
    return clone


def baked_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` in eval mode whose parametrizations (masks, quantizers) are
    replaced by the plain tensors they produce."""
    clone = copy_model(model).cpu().eval()
    for module in clone.modules():
        if parametrize.is_parametrized(module):
            for name in list(module.parametrizations.keys()):
                parametrize.remove_parametrizations(module, name, leave_parametrized=True)
    return clone.to(memory_format=torch.contiguous_format)
