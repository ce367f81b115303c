"""Layers that move channels without weights, declared for the tools that resize channels.

A *channel placer* is a weight-free layer (the option-A zero-padding shortcut of the CIFAR
ResNets, say) whose input channel ``k`` lands at output channel ``positions[k]`` of
``out_channels``; every other output channel is independent of the input (zero). A model
declares such a layer with a class decorator, and structured pruning
(:mod:`deepshrink.prune.structured`) then keeps it whole when tracing, couples each input
channel with the output channel it lands on, and rebuilds it with fewer channels; the model
layer does not depend on pruning, nor pruning on the zoo:

    @register_channel_placer
    class Shortcut(nn.Module):
        in_channels: int; out_channels: int; positions: list[int]   # increasing
        def constructor_args(self) -> dict: ...   # JSON; in_channels, out_channels, positions among them

A resized placer is the class built from its ``constructor_args()`` with new
``in_channels``/``out_channels``/``positions`` (:func:`placed`). Registering also allows it
as a module override (:func:`~deepshrink.models.overrides.register_override_type`), so model
files of a pruned model rebuild it.
"""

from __future__ import annotations

from typing import Any, Protocol

from torch import nn

from deepshrink.models.overrides import register_override_type

__all__ = ["ChannelPlacer", "is_channel_placer", "placed", "register_channel_placer"]


class ChannelPlacer(Protocol):
    """What structured pruning reads from a registered placer."""

    in_channels: int
    out_channels: int
    positions: list[int]  # output channel of each input channel, increasing

    def constructor_args(self) -> dict[str, Any]: ...


_PLACERS: set[type[nn.Module]] = set()


def register_channel_placer(cls: type[nn.Module]) -> type[nn.Module]:
    """Class decorator: declare ``cls`` a channel placer (see the module docstring)."""
    register_override_type(cls)  # checks constructor_args()
    _PLACERS.add(cls)
    return cls


def is_channel_placer(module: nn.Module) -> bool:
    """Whether ``module`` is an instance of a registered channel placer (or of a subclass)."""
    return isinstance(module, tuple(_PLACERS))


def placed(layer: ChannelPlacer, out_channels: int, positions: list[int]) -> nn.Module:
    """A layer like ``layer`` (same class, same other arguments, same training mode) with
    ``len(positions)`` input channels landing at ``positions`` of ``out_channels``."""
    args = {**layer.constructor_args(), "in_channels": len(positions), "out_channels": out_channels,
            "positions": list(positions)}
    return type(layer)(**args).train(layer.training)
