"""Quantized bits come from the quantizer wherever it sits on the weight's parametrization chain."""

import torch
from torch import nn
from torch.nn.utils import parametrize

from deepshrink.analysis.costs import model_costs


class FourLevels(nn.Module):
    """Rounds to 4 levels (2 bits) through the QuantizedRepresentation protocol."""

    levels = torch.tensor([[-1.0, 0.0, 0.5, 1.0]])

    def forward(self, weight):
        codebook, indices = self.quantized_representation(weight)
        return codebook[0, indices]

    def quantized_representation(self, original):
        return self.levels, (original[..., None] - self.levels[0]).abs().argmin(-1)


class HalfMask(nn.Module):
    """Zeroes the first half of the output channels."""

    def forward(self, weight):
        mask = torch.ones_like(weight)
        mask[: weight.shape[0] // 2] = 0
        return weight * mask


def test_a_mask_after_the_quantizer_keeps_the_quantized_size():
    conv = nn.Conv2d(6, 4, 3, padding=1, bias=False)
    parametrize.register_parametrization(conv, "weight", FourLevels())
    parametrize.register_parametrization(conv, "weight", HalfMask())
    (row,) = model_costs(conv, (6, 8, 8)).layers
    assert row.size_bits == 4 * 6 * 9 * 2 + 4 * 32  # 2-bit indices + 4 float32 codebook entries
