"""Physical removal: slice weights, biases and BatchNorm statistics down to the kept channels.

Conv2d, Linear and BatchNorm modules are resized in place (same objects, smaller tensors,
updated ``in_channels`` / ``out_channels`` / ``num_features`` / ...); a channel placer
(:mod:`deepshrink.models.channels`, such as the option-A shortcut) is replaced by one with the
new channel positions. The result is an ordinary dense model.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Callable

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from deepshrink.errors import UserError
from deepshrink.models.channels import ChannelPlacer, is_channel_placer, placed
from deepshrink.prune.structured.group import Group

__all__ = ["attached_error", "remove_channels"]


def attached_error(name: str) -> UserError:
    """The error for module ``name`` carrying a parametrization, which removal cannot slice."""
    return UserError(f"{name} has a pruning mask or quantizer attached; finalize it before structured pruning")


def _keep(size: int, removed: Tensor) -> Tensor:
    keep = torch.ones(size, dtype=torch.bool)
    keep[removed] = False
    return keep.nonzero().flatten()


def _slice(module: nn.Module, name: str, dim: int, keep: Tensor) -> None:
    tensor = getattr(module, name)
    if tensor is None:
        return
    sliced = tensor.detach().index_select(dim, keep.to(tensor.device)).clone()
    if isinstance(tensor, nn.Parameter):
        setattr(module, name, nn.Parameter(sliced, requires_grad=tensor.requires_grad))
    else:
        setattr(module, name, sliced)


def _drop(module: nn.Module, dim: int, size: int, removed: Tensor) -> int:
    """Slice the weight (and, along dim 0, the bias) of ``module`` to the indices of range(``size``)
    not in ``removed``; returns how many are kept."""
    keep = _keep(size, removed)
    _slice(module, "weight", dim, keep)
    if dim == 0:
        _slice(module, "bias", 0, keep)
    return len(keep)


def _resize_conv(conv: nn.Conv2d, removed: dict[str, Tensor]) -> None:
    if "dw" in removed:
        conv.in_channels = conv.out_channels = conv.groups = _drop(conv, 0, conv.out_channels, removed["dw"])
    if "out" in removed:
        conv.out_channels = _drop(conv, 0, conv.out_channels, removed["out"])
    if "in" in removed:
        conv.in_channels = _drop(conv, 1, conv.in_channels, removed["in"])
    if "gin" in removed:  # index j within each group's inputs
        conv.in_channels = conv.groups * _drop(conv, 1, conv.in_channels // conv.groups, removed["gin"])


def _resize_linear(linear: nn.Linear, removed: dict[str, Tensor]) -> None:
    if "out" in removed:
        linear.out_features = _drop(linear, 0, linear.out_features, removed["out"])
    if "in" in removed:
        linear.in_features = _drop(linear, 1, linear.in_features, removed["in"])


def _resize_batchnorm(bn: nn.modules.batchnorm._BatchNorm, removed: dict[str, Tensor]) -> None:
    keep = _keep(bn.num_features, removed["bn"])
    for name in ("weight", "bias", "running_mean", "running_var"):
        _slice(bn, name, 0, keep)
    bn.num_features = len(keep)


def _resize_placer(placer: ChannelPlacer, removed: dict[str, Tensor]) -> nn.Module:
    """A new channel placer: kept input channels keep their order, each landing at its old
    position's rank among the kept output channels."""
    none = torch.empty(0, dtype=torch.long)
    keep_in = _keep(placer.in_channels, removed.get("pad_in", none)).tolist()
    keep_out = _keep(placer.out_channels, removed.get("pad_out", none)).tolist()
    new_position = {old: new for new, old in enumerate(keep_out)}
    return placed(placer, len(keep_out), [new_position[placer.positions[k]] for k in keep_in])


_RESIZERS = {nn.Conv2d: _resize_conv, nn.Linear: _resize_linear, nn.BatchNorm1d: _resize_batchnorm,
             nn.BatchNorm2d: _resize_batchnorm}


def _resizer(module: nn.Module) -> Callable[[nn.Module, dict[str, Tensor]], nn.Module | None]:
    """The function that resizes ``module`` in place (or returns its replacement)."""
    return _resize_placer if is_channel_placer(module) else _RESIZERS[type(module)]


@torch.no_grad()
def remove_channels(model: nn.Module, plan: dict[Group, Tensor]) -> list[str]:
    """Remove channels ``plan[group]`` (indices into each group's n channels) from ``model``;
    returns the names of the resized modules. Every group must keep at least one channel."""
    removed: dict[str, dict[str, list[Tensor]]] = defaultdict(lambda: defaultdict(list))
    for group, channels in plan.items():
        channels = torch.as_tensor(channels, dtype=torch.long).unique()
        if len(channels) == 0:
            continue
        if len(channels) >= group.n:
            raise UserError(f"cannot remove all {group.n} channels of group {group.name!r}")
        for (name, role), indices in group.removal(channels).items():
            removed[name][role].append(indices)
    for name, roles in removed.items():
        module = model.get_submodule(name)
        if parametrize.is_parametrized(module):
            raise attached_error(name)
        replacement = _resizer(module)(module, {role: torch.cat(parts) for role, parts in roles.items()})
        if replacement is not None:
            parent, _, attr = name.rpartition(".")
            device = next((p.device for p in model.parameters()), torch.device("cpu"))
            setattr(model.get_submodule(parent), attr, replacement.to(device))
    return sorted(removed)
