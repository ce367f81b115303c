"""Weight quantizers: parametrizations that replace a layer's weight by its quantized value.

Both implement the codec's protocol ``quantized_representation(original) -> (codebook (G, K)
float32, indices int64 of the weight's shape)``, where ``original`` is the tensor the quantizer
receives (the masked weight when a pruning mask comes first in the chain) and row g of the
codebook serves ``weight[g]`` (G = 1 per tensor, G = C per output channel). Wherever
``forward(original)`` is not exactly 0.0, ``codebook[g, indices]`` equals it bit for bit;
positions that quantize to exactly 0.0 (pruned) may carry any index.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from deepshrink.errors import UserError
from deepshrink.models.attach import register_parametrization
from deepshrink.quant.kmeans import kmeans_1d
from deepshrink.quant.linear import (BITS, dequantize_levels, fake_quantize, level_range, quant_params,
                                     quantize_levels)

PRUNED = -1  # index of a pruned (exactly zero) weight in KMeansQuantizer.indices
KMEANS_BITS = (2, 3, 4, 5, 6, 7, 8)  # a codebook of 2^bits centroids


def spec_args(kind: str, args: Any, fields: dict[str, type], bits: tuple[int, ...]) -> dict[str, Any]:
    """The ``args`` of a ``kind`` record read from a file, checked before anything is built:
    ``bits`` one of ``bits``, no name outside ``fields``, each value of its field's type;
    :class:`UserError` otherwise (a 31-bit codebook would take gigabytes)."""
    if not isinstance(args, dict) or "bits" not in args or not set(args) <= set(fields):
        unknown = sorted(map(str, set(args) - set(fields)))[:3] if isinstance(args, dict) else []
        what = f"unknown argument {', '.join(unknown)}; " if unknown else ""
        raise UserError(f"malformed {kind} quantizer record: {what}its arguments are {', '.join(fields)} (bits required)")
    for name, value in args.items():
        if type(value) is not fields[name]:
            raise UserError(f"malformed {kind} quantizer record: {name} must be {fields[name].__name__}, got {value!r}")
    if args["bits"] not in bits:
        raise UserError(f"{kind} quantizer record: bits must be one of {', '.join(map(str, bits))}, got {args['bits']}")
    return args


@register_parametrization("linear-quant")
class LinearQuantizer(nn.Module):
    """Fake-quantizes the weight to ``bits``-bit levels whose range is recomputed from the
    current weight at every forward (see :mod:`deepshrink.quant.linear` for the convention);
    the gradient reaches the float weight unchanged (straight-through estimator)."""

    def __init__(self, bits: int, symmetric: bool = False, per_channel: bool = False):
        super().__init__()
        self.bits, self.symmetric, self.per_channel = bits, symmetric, per_channel
        self.qmin, self.qmax = level_range(bits, symmetric)

    def forward(self, weight: Tensor) -> Tensor:
        scale, zero_point = quant_params(weight, self.bits, self.symmetric, self.per_channel)
        return fake_quantize(weight, scale, zero_point, self.qmin, self.qmax)

    def quantized_representation(self, original: Tensor) -> tuple[Tensor, Tensor]:
        """Codebook ``scale_g * (q - zero_point_g)`` over the levels q = qmin..qmax, and the
        level index (q - qmin) of each weight."""
        with torch.no_grad():
            scale, zero_point = quant_params(original, self.bits, self.symmetric, self.per_channel)
            indices = quantize_levels(original, scale, zero_point, self.qmin, self.qmax) - self.qmin
            levels = torch.arange(self.qmin, self.qmax + 1, dtype=original.dtype, device=original.device)
            codebook = dequantize_levels(levels.view(1, -1), scale.reshape(-1, 1), zero_point.reshape(-1, 1))
        return codebook.float(), indices.long()

    def spec(self) -> dict[str, Any]:
        return {"bits": self.bits, "symmetric": self.symmetric, "per_channel": self.per_channel}

    @classmethod
    def from_spec(cls, tensor: Tensor, args: dict[str, Any]) -> "LinearQuantizer":
        return cls(**spec_args("linear-quant", args, {"bits": int, "symmetric": bool, "per_channel": bool}, BITS))

    def extra_repr(self) -> str:
        return f"bits={self.bits}, symmetric={self.symmetric}, per_channel={self.per_channel}"


@register_parametrization("kmeans")
class KMeansQuantizer(nn.Module):
    """Weight sharing: the weight is ``centroids[indices]`` (0.0 where ``indices`` is
    :data:`PRUNED`). ``centroids`` (2^bits,) is the trainable codebook; through the indexing,
    each centroid's gradient is the sum of the gradients of the weights assigned to it. The
    input weight is not read, so it gets no gradient and optimisers leave it unchanged."""

    def __init__(self, shape: torch.Size | tuple[int, ...], bits: int):
        super().__init__()
        self.bits = bits
        self.register_buffer("indices", torch.zeros(shape, dtype=torch.long))
        self.centroids = nn.Parameter(torch.zeros(2 ** bits))

    @classmethod
    def fit(cls, weight: Tensor, bits: int, init: str = "linear", seed: int = 0) -> "KMeansQuantizer":
        """Cluster the non-zero elements of ``weight`` into 2^bits centroids (1-D k-means with
        ``init`` in random/density/linear); zeros stay zero."""
        weight = weight.detach()
        quantizer = cls(weight.shape, bits).to(weight.device)
        kept = weight != 0
        clustering = kmeans_1d(weight[kept], 2 ** bits, init, seed=seed)
        with torch.no_grad():
            quantizer.centroids.copy_(clustering.centroids)
            quantizer.indices.fill_(PRUNED)
            quantizer.indices[kept] = clustering.labels.to(weight.device)
        return quantizer

    def forward(self, weight: Tensor) -> Tensor:
        shared = self.centroids[self.indices.clamp(min=0)]
        return torch.where(self.indices == PRUNED, torch.zeros((), dtype=shared.dtype, device=shared.device),
                           shared)

    def quantized_representation(self, original: Tensor) -> tuple[Tensor, Tensor]:
        """The centroids as a one-row codebook (1, 2^bits) and the indices (pruned ones as 0)."""
        return self.centroids.detach().float().view(1, -1).clone(), self.indices.clamp(min=0)

    def spec(self) -> dict[str, Any]:
        return {"bits": self.bits}

    @classmethod
    def from_spec(cls, tensor: Tensor, args: dict[str, Any]) -> "KMeansQuantizer":
        return cls(tensor.shape, **spec_args("kmeans", args, {"bits": int}, KMEANS_BITS))

    def extra_repr(self) -> str:
        return f"bits={self.bits}, shape={tuple(self.indices.shape)}"
