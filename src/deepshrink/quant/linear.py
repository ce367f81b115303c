"""Linear (uniform, fixed-point) quantization: parameters from a tensor's range, and fake
quantization with a straight-through estimator.

Conventions (b bits, integer levels q, real value ``scale * (q - zero_point)``):

- asymmetric: q in [0, 2^b - 1]; the range [lo, hi] = [min(min x, 0), max(max x, 0)],
  scale = (hi - lo) / (2^b - 1), zero_point = round(-lo / scale) clamped to [0, 2^b - 1];
- symmetric: q in [-(2^(b-1) - 1), 2^(b-1) - 1] (2^b - 1 levels, symmetric around zero),
  scale = max|x| / (2^(b-1) - 1), zero_point = 0.

The range always contains 0, so 0.0 is a level (q = zero_point) and an exactly-zero (pruned)
weight quantizes to exactly 0.0: zeros never widen the range, so they are in effect left out of
it. A tensor (or channel) that is all zeros gets scale 1. Per-channel parameters have one
scale per output channel (dim 0) and are shaped ``(C, 1, ..., 1)`` to broadcast against x.
"""

from __future__ import annotations

import torch
from torch import Tensor

BITS = (2, 3, 4, 5, 6, 7, 8, 16)


def level_range(bits: int, symmetric: bool) -> tuple[int, int]:
    """The integer levels (qmin, qmax) of ``bits``-bit quantization."""
    if symmetric:
        return -(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1
    return 0, 2 ** bits - 1


def quant_params(x: Tensor, bits: int, symmetric: bool = False,
                 per_channel: bool = False) -> tuple[Tensor, Tensor]:
    """(scale, zero_point) float tensors for quantizing ``x`` (no gradient flows through them):
    shape () per tensor, or (C, 1, ..., 1) per output channel."""
    x = x.detach()
    if per_channel:
        flat = x.reshape(x.shape[0], -1)
        lo, hi = flat.amin(dim=1), flat.amax(dim=1)
    else:
        lo, hi = x.min(), x.max()
    lo, hi = lo.clamp(max=0), hi.clamp(min=0)
    qmin, qmax = level_range(bits, symmetric)
    if symmetric:
        scale = _positive(torch.maximum(-lo, hi) / qmax)
        zero_point = torch.zeros_like(scale)
    else:
        scale = _positive((hi - lo) / (qmax - qmin))
        zero_point = torch.round(-lo / scale).clamp(qmin, qmax)
    if per_channel:
        shape = (-1,) + (1,) * (x.dim() - 1)
        scale, zero_point = scale.view(shape), zero_point.view(shape)
    return scale, zero_point


def _positive(scale: Tensor) -> Tensor:
    """Scale 1 where the range is empty (all zeros), so that x / scale stays finite."""
    return torch.where(scale > 0, scale, torch.ones_like(scale))


def quantize_levels(x: Tensor, scale: Tensor, zero_point: Tensor, qmin: int, qmax: int) -> Tensor:
    """The integer level of each element of ``x``, as floats: clamp(round(x / scale) + zp)."""
    return (torch.round(x / scale) + zero_point).clamp(qmin, qmax)


def dequantize_levels(q: Tensor, scale: Tensor, zero_point: Tensor) -> Tensor:
    """Real values ``scale * (q - zero_point)`` (the one expression used everywhere, so that
    codebooks built from it match the fake-quantized weights bit for bit)."""
    return scale * (q - zero_point)


class _FakeQuantize(torch.autograd.Function):
    """Quantize-dequantize forward; the incoming gradient passes through unchanged."""

    @staticmethod
    def forward(ctx, x, scale, zero_point, qmin, qmax):
        return dequantize_levels(quantize_levels(x, scale, zero_point, qmin, qmax), scale, zero_point)

    @staticmethod
    def backward(ctx, grad):
        return grad, None, None, None, None


def fake_quantize(x: Tensor, scale: Tensor, zero_point: Tensor, qmin: int, qmax: int) -> Tensor:
    """``x`` rounded to its nearest level (float values, same shape) with a straight-through
    estimator: d out / d x is taken as the identity, so x's gradient is the incoming one."""
    return _FakeQuantize.apply(x, scale, zero_point, qmin, qmax)
