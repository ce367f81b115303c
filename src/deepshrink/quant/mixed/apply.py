"""Attaching a quantizer per layer at its own bit-width (the assignment of a mixed-precision plan)."""

from __future__ import annotations

import dataclasses
from typing import Iterable, Mapping

from torch import Tensor, nn
from torch.nn.utils import parametrize

from deepshrink.errors import UserError
from deepshrink.prune.select import PRUNABLE, prunable_layers
from deepshrink.quant.api import QuantConfig, quantizer_of
from deepshrink.quant.quantizers import KMeansQuantizer, LinearQuantizer


def mixed_layers(model: nn.Module, config: QuantConfig) -> dict[str, nn.Module]:
    """The layers whose bits are chosen: ``config``'s selection (Conv2d/Linear minus
    ``exclude``, and minus the first conv and the classifier unless ``exclude_first_last`` is
    False), in module order. ``config.bits`` is not used."""
    return prunable_layers(model, config.exclude, exclude_first_last=config.exclude_first_last)


def config_at(config: QuantConfig, bits: int) -> QuantConfig:
    """``config`` with ``bits`` (validated: a :class:`UserError` if the method does not take it)."""
    return dataclasses.replace(config, bits=bits)


def weight_quantizer(weight: Tensor, bits: int, config: QuantConfig) -> nn.Module:
    """A weight quantizer for ``weight`` (the tensor it will receive, masked if pruned) at
    ``bits``, with ``config``'s method and options; k-means clusters ``weight`` now."""
    config = config_at(config, bits)
    if config.method == "linear":
        return LinearQuantizer(bits, config.symmetric, config.per_channel)
    return KMeansQuantizer.fit(weight, bits, config.init, config.seed)


def attach_at_bits(module: nn.Module, bits: int, config: QuantConfig) -> None:
    """Parametrize ``module.weight`` with a quantizer at ``bits`` (``config``'s method)."""
    quantizer = weight_quantizer(module.weight, bits, config)
    parametrize.register_parametrization(module, "weight", quantizer, unsafe=True)
    if config.method == "kmeans":  # as quantize_: only the centroids train
        module.parametrizations.weight.original.requires_grad_(False)


def unquantized_layers(model: nn.Module, names: Iterable[str]) -> dict[str, nn.Module]:
    """name -> module for the ``names`` of ``model``; a :class:`UserError` unless each is a
    Conv2d/Linear layer not quantized yet."""
    modules = dict(model.named_modules())
    found = {}
    for name in names:
        module = modules.get(name)
        if not isinstance(module, PRUNABLE):
            raise UserError(f"{name!r} is not a Conv2d/Linear layer of the model")
        if quantizer_of(module) is not None:
            raise UserError(f"{name} is already quantized; quantize the unquantized model instead")
        found[name] = module
    return found


def quantize_mixed_(model: nn.Module, assignment: Mapping[str, int], config: QuantConfig) -> nn.Module:
    """Attach to each layer of ``assignment`` (name -> bits) a weight quantizer at its bits,
    with ``config``'s method and options (``config.bits`` and its layer selection are not
    used). In place; returns ``model``. As :func:`deepshrink.quant.quantize_`: a pruning mask
    stays first in the chain, and k-means freezes the float weight."""
    layers = unquantized_layers(model, assignment)
    for name, module in layers.items():
        attach_at_bits(module, int(assignment[name]), config)
    return model
