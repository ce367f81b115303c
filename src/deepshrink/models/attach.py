"""What stages attach to a model (parametrizations of its tensors, hooked submodules), and how
model files keep them.

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

A *hooked submodule* (an activation quantizer, say) is a child module stored under a fixed
attribute of the module it acts on, plus a forward (pre-)hook on that module that calls it. Its
class is registered under a ``kind`` name, names the places it can sit (its ``roles``), and
describes itself as JSON data the same way:

    @register_hooked_submodule("scaler")
    class Scaler(nn.Module):
        roles = {"input": HookedRole("input_scaler", scale_input_hook, pre=True)}
        def spec(self) -> dict: ...                        # JSON-serialisable constructor args
        @classmethod
        def from_spec(cls, args) -> "Scaler": ...          # a placeholder, buffers from the state dict

The hooks must be module-level functions that read the submodule from the module they run on
(``module.input_scaler``), so that ``copy.deepcopy`` / :func:`copy_model` keep them working.
Model files record them as ``{"module": qualified name, "role": ..., "args": spec}``
(:func:`describe_hooked_submodules`, :func:`restore_hooked_submodules`).

The registries start empty and this module names no stage: each stage package registers its
kinds when it is imported, and the top-level package imports the stage packages
(:mod:`deepshrink.stages`), so whatever reads a model file finds every kind.

A quantizer is a parametrization that also implements :class:`QuantizedRepresentation`;
:func:`quantizer_of` finds it anywhere on a tensor's parametrization chain and
:func:`quantized_representation_of` gives its codebook and indices (for the codec, the costs).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Protocol, runtime_checkable

import torch
from torch import nn
from torch.nn.utils import parametrize

from deepshrink.errors import UserError


class _Registry:
    """Classes by ``kind`` name, for one sort of attachment (``what``: for messages), filled by
    the packages that define them when they are imported."""

    def __init__(self, what: str):
        self.what = what
        self.classes: dict[str, type[nn.Module]] = {}

    def add(self, kind: str, cls: type[nn.Module]) -> type[nn.Module]:
        if self.classes.get(kind, cls) is not cls:
            raise ValueError(f"{self.what} kind {kind!r} registered twice")
        cls.kind = kind
        self.classes[kind] = cls
        return cls

    def get(self, kind: str) -> type[nn.Module] | None:
        """The class registered as ``kind``, or None."""
        return self.classes.get(kind)

    def lookup(self, kind: str) -> type[nn.Module]:
        """The class registered as ``kind``; a :class:`UserError` naming it when none is."""
        try:
            return self.classes[kind]
        except KeyError:
            raise UserError(f"model file uses {self.what} {kind!r}, which this deepshrink does not know") from None


_PARAMETRIZATIONS = _Registry("parametrization")
_HOOKED = _Registry("hooked submodule")


def register_parametrization(kind: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator: make parametrization ``cls`` saveable under the name ``kind``."""
    return lambda cls: _PARAMETRIZATIONS.add(kind, cls)


def parametrization_class(kind: str) -> type[nn.Module]:
    """The parametrization class registered as ``kind``."""
    return _PARAMETRIZATIONS.lookup(kind)


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
        try:
            param = parametrization_class(kind).from_spec(tensor.detach(), args)
        except UserError:
            raise
        except (TypeError, ValueError) as exc:  # arguments a kind does not take: the file's mistake
            raise UserError(f"model file attaches a malformed {kind!r} parametrization {record!r} ({exc})") from None
        parametrize.register_parametrization(module, tensor_name, param, unsafe=True)


@runtime_checkable
class QuantizedRepresentation(Protocol):
    """A quantizer: a parametrization whose output is ``codebook[g, indices]`` bit for bit
    (``g``: the row of each element's group, 0 for a one-row codebook)."""

    def quantized_representation(self, original: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(codebook (G, K), indices)`` of the weight this quantizer makes of ``original``
        (the tensor as it reaches the quantizer)."""


def _quantizer_position(module: nn.Module, tensor: str) -> int | None:
    """Index in ``module.<tensor>``'s parametrization chain of the last parametrization that
    implements :class:`QuantizedRepresentation`; None when there is none (or no chain)."""
    if not parametrize.is_parametrized(module, tensor):
        return None
    chain = module.parametrizations[tensor]
    return next((i for i in reversed(range(len(chain))) if isinstance(chain[i], QuantizedRepresentation)), None)


def quantizer_of(module: nn.Module, tensor: str = "weight") -> QuantizedRepresentation | None:
    """The quantizer on ``module.<tensor>``: the last parametrization of its chain that
    implements :class:`QuantizedRepresentation`, wherever it sits (later ones, such as a mask,
    may only zero values); None when there is none."""
    position = _quantizer_position(module, tensor)
    return None if position is None else module.parametrizations[tensor][position]


@torch.no_grad()
def quantized_representation_of(module: nn.Module, tensor: str = "weight") -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(codebook (G, K), indices)`` of the quantizer on ``module.<tensor>``, computed from the
    tensor as that quantizer receives it (the original through the parametrizations before
    it); None when the tensor has no quantizer."""
    position = _quantizer_position(module, tensor)
    if position is None:
        return None
    chain = module.parametrizations[tensor]
    value = chain.original
    for step in list(chain)[:position]:
        value = step(value)
    return chain[position].quantized_representation(value.detach())


@dataclass(frozen=True)
class HookedRole:
    """One place a hooked submodule can sit on a module: the ``attribute`` it is stored under
    and the ``hook`` that calls it, a forward pre-hook ``hook(module, args) -> args`` when
    ``pre``, else a forward hook ``hook(module, args, output) -> output``."""

    attribute: str
    hook: Callable[..., Any]
    pre: bool


def register_hooked_submodule(kind: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator: make hooked submodule ``cls`` (with ``roles``, ``spec()`` and
    ``from_spec(args)``) saveable under the name ``kind``."""

    def decorate(cls: type[nn.Module]) -> type[nn.Module]:
        missing = [name for name in ("roles", "spec", "from_spec") if not hasattr(cls, name)]
        if missing:
            raise TypeError(f"hooked submodule {cls.__name__} lacks {', '.join(missing)}")
        return _HOOKED.add(kind, cls)

    return decorate


def hooked_submodule_class(kind: str) -> type[nn.Module]:
    """The class registered as hooked-submodule ``kind``."""
    return _HOOKED.lookup(kind)


def attach_hooked(module: nn.Module, role: str, submodule: nn.Module) -> None:
    """Store ``submodule`` (a registered hooked submodule) on ``module`` as ``role`` says and
    register its hook; it takes ``module``'s training mode. In place."""
    place = type(submodule).roles[role]
    if hasattr(module, place.attribute):
        raise ValueError(f"{type(module).__name__} already has a {place.attribute!r}")
    submodule.train(module.training)  # a new submodule would otherwise be in training mode
    setattr(module, place.attribute, submodule)
    if place.pre:
        module.register_forward_pre_hook(place.hook)
    else:
        module.register_forward_hook(place.hook)


def hooked_submodules_of(model: nn.Module, kind: str) -> list[tuple[str, str, nn.Module]]:
    """``(qualified module name, role, submodule)`` for every ``kind`` submodule attached to
    ``model``, in module order (roles in the order the class declares them). Nothing when the
    kind is not registered (nothing of it can be attached then)."""
    cls = _HOOKED.get(kind)
    if cls is None:
        return []
    found = []
    for name, module in model.named_modules():
        for role, place in cls.roles.items():
            submodule = getattr(module, place.attribute, None)
            if isinstance(submodule, cls):
                found.append((name, role, submodule))
    return found


def describe_hooked_submodules(model: nn.Module, kind: str) -> list[dict[str, Any]]:
    """One record per attached ``kind`` submodule, in module order:
    ``{"module": qualified name, "role": ..., "args": spec}``."""
    return [{"module": name, "role": role, "args": submodule.spec()}
            for name, role, submodule in hooked_submodules_of(model, kind)]


def restore_hooked_submodules(model: nn.Module, kind: str, records: Iterable[Mapping[str, Any]]) -> None:
    """Re-attach the ``kind`` submodules ``records`` describe (from a model file) with their
    hooks, on ``model``'s device, before the state dict (their buffers) is loaded."""
    cls = hooked_submodule_class(kind)
    device = model_device(model)
    for record in records:
        try:
            module = model.get_submodule(record["module"])
            role = record["role"]
            place = cls.roles[role]
        except (KeyError, AttributeError, TypeError):
            raise UserError(f"model file attaches a {kind!r} submodule to {record!r}, "
                            "which its architecture does not have") from None
        if hasattr(module, place.attribute):
            raise UserError(f"model file attaches two {place.attribute.replace('_', ' ')}s to {record['module']!r}")
        attach_hooked(module, role, cls.from_spec(record.get("args") or {}).to(device))


def detach_hooked_submodules(model: nn.Module, kind: str) -> nn.Module:
    """Remove every ``kind`` submodule and its hook from ``model`` (in place; returns ``model``)."""
    for name, role, submodule in hooked_submodules_of(model, kind):
        module = model.get_submodule(name)
        place = type(submodule).roles[role]
        hooks = module._forward_pre_hooks if place.pre else module._forward_hooks
        for hook_id in [key for key, value in hooks.items() if value is place.hook]:
            del hooks[hook_id]
        delattr(module, place.attribute)
    return model


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (or buffer); the CPU for a model without tensors."""
    tensor = next(iter(model.parameters()), None)
    if tensor is None:
        tensor = next(iter(model.buffers()), None)
    return tensor.device if tensor is not None else torch.device("cpu")


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
