"""The size model of mixed precision (bytes, no entropy coding): see :mod:`deepshrink.quant.mixed`."""

from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence

from torch import Tensor, nn
from torch.nn.utils import parametrize

from deepshrink.errors import UserError
from deepshrink.prune.select import PRUNABLE
from deepshrink.quant.api import QuantConfig

FLOAT_BYTES = 4  # float32 element, and one stored scale, zero-point or centroid
Sizes = dict[str, dict[int, int]]               # layer -> bits -> bytes of that layer's weight


def weight_bytes(numel: int, bits: int) -> int:
    """Bytes of ``numel`` indices of ``bits`` bits each, bit-packed: ceil(numel * bits / 8)."""
    return math.ceil(numel * bits / 8)


def quantizer_parameter_bytes(weight_shape: Sequence[int], bits: int, config: QuantConfig) -> int:
    """Bytes of a quantized weight's parameters: per group (output channel when per-channel,
    else the tensor) a float32 scale and, when asymmetric, a float32 zero-point (linear); or
    the 2^bits float32 centroids (k-means)."""
    if config.method == "kmeans":
        return 2 ** bits * FLOAT_BYTES
    groups = weight_shape[0] if config.per_channel else 1
    return groups * FLOAT_BYTES * (1 if config.symmetric else 2)


def quantized_weight_bytes(weight_shape: Sequence[int], bits: int, config: QuantConfig) -> int:
    """Bytes of a weight of ``weight_shape`` quantized at ``bits``: indices plus parameters."""
    return weight_bytes(math.prod(weight_shape), bits) + quantizer_parameter_bytes(weight_shape, bits, config)


def layer_size_options(model: nn.Module, layers: Sequence[str], bits_options: Sequence[int],
                       config: QuantConfig) -> Sizes:
    """``result[layer][bits]``: bytes of that layer's weight quantized at ``bits`` (its bias
    and everything else is counted by :func:`model_size_bytes`)."""
    return {name: {bits: quantized_weight_bytes(model.get_submodule(name).weight.shape, bits, config)
                   for bits in bits_options}
            for name in layers}


def _stored_tensors(model: nn.Module) -> Iterable[tuple[str, str, Tensor]]:
    """(module name, tensor name, tensor) of every parameter (a parametrized one by its
    original) and persistent floating-point buffer of the model's own modules (not of the
    parametrizations: masks, k-means indices)."""
    for module_name, module in model.named_modules():
        if "parametrizations" in module_name.split("."):
            continue
        tensors = dict(module.named_parameters(recurse=False))
        if parametrize.is_parametrized(module):  # the original has the shape the forward sees
            tensors.update({name: chain.original for name, chain in module.parametrizations.items()})
        for name, buffer in module.named_buffers(recurse=False):
            if buffer.is_floating_point() and name not in module._non_persistent_buffers_set:
                tensors[name] = buffer
        for name, tensor in tensors.items():
            yield module_name, name, tensor


def float_bytes_besides(model: nn.Module, layers: Iterable[str]) -> int:
    """Bytes of everything in ``model`` but the weights of ``layers``, all float32: the part of
    the size that no choice of bits changes."""
    chosen = set(layers)
    return sum(tensor.numel() * FLOAT_BYTES for module_name, name, tensor in _stored_tensors(model)
               if not (name == "weight" and module_name in chosen))


def model_size_bytes(model: nn.Module, assignment: Mapping[str, int], config: QuantConfig) -> int:
    """Bytes of ``model`` stored with each layer of ``assignment`` (name -> bits) quantized at
    its bits and every other tensor as float32, by the size model of
    :mod:`deepshrink.quant.mixed` (quantizers already attached to ``model`` are not consulted:
    ``{}`` gives the float size)."""
    unknown = set(assignment) - {name for name, m in model.named_modules() if isinstance(m, PRUNABLE)}
    if unknown:
        raise UserError(f"not Conv2d/Linear layers of the model: {', '.join(sorted(unknown))}")
    total = 0
    for module_name, name, tensor in _stored_tensors(model):
        if name == "weight" and module_name in assignment:
            total += quantized_weight_bytes(tensor.shape, int(assignment[module_name]), config)
        else:
            total += tensor.numel() * FLOAT_BYTES
    return total
