"""BatchNorm stored as its inference affine: 2 numbers per channel instead of 4.

In eval mode a BatchNorm computes ``y = (x - mean) / sqrt(var + eps) * weight + bias``, i.e.
``y = x * scale + shift`` per channel with ``scale = weight / sqrt(var + eps)`` and
``shift = bias - mean * scale``. A ``.dsz`` written with ``bn_affine`` stores only ``scale``
(as the weight) and ``shift`` (as the bias); decoding sets the running mean to 0, the running
variance to ``1 - eps`` (so ``sqrt(var + eps)`` is 1) and the batch counter to 0. Outputs match
within float rounding; the training statistics are gone, which a compressed file for inference
does not need (fine-tuning a decoded model re-estimates them).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

STATISTICS = ("running_mean", "running_var", "num_batches_tracked")


def affine_batchnorms(model: nn.Module) -> dict[str, _BatchNorm]:
    """name -> module for the BatchNorms that can be stored as an affine: with a learned
    weight and bias and running statistics."""
    return {name: m for name, m in model.named_modules()
            if isinstance(m, _BatchNorm) and m.affine and m.track_running_stats}


def state_key(module_name: str, attr: str) -> str:
    """The state-dict key of ``attr`` of the module named ``module_name`` ("" for the root)."""
    return f"{module_name}.{attr}" if module_name else attr


def statistic_keys(model: nn.Module) -> list[str]:
    """State-dict keys of the running statistics of ``model``'s affine BatchNorms."""
    return [state_key(name, stat) for name in affine_batchnorms(model) for stat in STATISTICS]


def inference_affine(bn: _BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift), each (C,) float32, of ``bn`` in eval mode (computed in float64)."""
    with torch.no_grad():
        scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
        shift = bn.bias.double() - bn.running_mean.double() * scale
    return scale.float(), shift.float()


def neutral_statistics(bn: _BatchNorm) -> dict[str, torch.Tensor]:
    """The running statistics under which ``bn``'s weight and bias are its scale and shift."""
    channels = bn.running_mean.shape
    return {"running_mean": torch.zeros(channels), "running_var": torch.full(channels, 1.0 - bn.eps),
            "num_batches_tracked": torch.zeros((), dtype=torch.long)}
