"""A model prepared for fast CPU inference: parametrizations baked, BatchNorm folded into the
convolution before it, weights in channels-last memory format.

Folding uses PyTorch's own pass (``torch.fx.experimental.optimization.fuse``): for a Conv2d
followed by a BatchNorm2d in eval mode, W' = W · γ/σ and b' = (b − μ) · γ/σ + β with
σ = sqrt(running_var + eps), so one convolution replaces the pair and outputs change only by
float rounding. The result is for inference only (no training, no saving).
"""

from __future__ import annotations

import torch
from torch import nn

from deepshrink.errors import UserError
from deepshrink.models.attach import baked_copy


def count_batchnorms(model: nn.Module) -> int:
    """Number of BatchNorm layers left in ``model``."""
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode ``torch.fx`` copy of ``model`` with every Conv→BatchNorm pair folded into
    one convolution (BatchNorms after something else are kept). ``model`` is not changed."""
    from torch.fx.experimental.optimization import fuse

    hooked = [name for name, m in model.named_modules() if m._forward_pre_hooks or m._forward_hooks]
    if hooked:  # a traced graph calls modules without their hooks: e.g. activation quantizers would vanish
        raise UserError(f"cannot fold BatchNorm: {hooked[0]} has forward hooks (activation quantizers?), "
                        "which torch.fx would drop")
    try:
        return fuse(baked_copy(model))
    except Exception as error:  # torch.fx tracing failures have many types
        raise UserError(f"cannot fold BatchNorm: {type(model).__name__} is not traceable by torch.fx "
                        f"({str(error).splitlines()[0] if str(error) else type(error).__name__})") from None


def inference_copy(model: nn.Module, *, fold_bn: bool = True, channels_last: bool = True) -> nn.Module:
    """An eval-mode copy of ``model`` for CPU inference: parametrizations baked into plain
    weights, BatchNorm folded (``fold_bn``), 4-D weights in NHWC layout (``channels_last``;
    oneDNN's convolutions are faster on it). Inputs may stay NCHW: the first convolution
    converts them."""
    prepared = fold_batchnorm(model) if fold_bn else baked_copy(model)
    if channels_last:
        prepared = prepared.to(memory_format=torch.channels_last)
    return prepared.eval()
