"""A small pruned and quantized model for the codec tests, with a stand-in quantizer."""

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from deepshrink.models import InputSpec, ModelInfo, build_model, make_spec
from deepshrink.models.attach import register_parametrization
from deepshrink.quant.quantizers import LinearQuantizer


@register_parametrization("test-codebook")
class StandInQuantizer(nn.Module):
    """Rounds each weight to the nearest of ``levels`` evenly spaced values of its row
    (per_channel) or tensor range; exact zeros stay zero. Implements the codec protocol."""

    def __init__(self, levels: int = 16, per_channel: bool = False):
        super().__init__()
        self.levels, self.per_channel = levels, per_channel

    def _codebook(self, w):
        flat = w.reshape(w.shape[0], -1) if self.per_channel else w.reshape(1, -1)
        low, high = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
        return low + (high - low) * torch.linspace(0, 1, self.levels).view(1, -1)

    def quantized_representation(self, original):
        codebook = self._codebook(original)
        rows = codebook if self.per_channel else codebook.expand(original.shape[0], -1)
        flat = original.reshape(original.shape[0], -1, 1)
        indices = (flat - rows.unsqueeze(1)).abs().argmin(-1).reshape(original.shape)
        return codebook, indices

    def forward(self, w):
        codebook, indices = self.quantized_representation(w)
        rows = torch.arange(w.shape[0]).view(-1, *([1] * (w.dim() - 1))) if self.per_channel else 0
        return torch.where(w == 0, torch.zeros(()), codebook[rows, indices])

    def spec(self):
        return {"levels": self.levels, "per_channel": self.per_channel}

    @classmethod
    def from_spec(cls, tensor, args):
        return cls(**args)


@register_parametrization("test-prune")
class Prune(nn.Module):
    def __init__(self, mask):
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, w):
        return w * self.mask

    def spec(self):
        return {}

    @classmethod
    def from_spec(cls, tensor, args):
        return cls(torch.ones_like(tensor))


def compressed_digits_cnn(seed=0, linear_fc=False):
    """digits-cnn: conv1 float, conv2 pruned 80% + per-tensor 16 levels, conv3 pruned 50% +
    per-channel 8 levels, fc pruned float (``linear_fc``: pruned + the real per-channel 3-bit
    linear quantizer, stored as a grid); BatchNorm statistics made non-trivial."""
    spec = make_spec("digits-cnn")
    torch.manual_seed(seed)
    model = build_model(spec)
    with torch.no_grad():
        for bn in (model.bn1, model.bn2, model.bn3):
            bn.running_mean.normal_()
            bn.running_var.uniform_(0.5, 2)
            bn.weight.normal_()
            bn.num_batches_tracked.fill_(7)
    for module, amount, quantizer in [(model.conv2, 0.8, StandInQuantizer(16)),
                                      (model.conv3, 0.5, StandInQuantizer(8, per_channel=True)),
                                      (model.fc, 0.7, LinearQuantizer(3, per_channel=True) if linear_fc else None)]:
        mask = (torch.rand_like(module.weight) >= amount).float()
        parametrize.register_parametrization(module, "weight", Prune(mask), unsafe=True)
        if quantizer is not None:
            parametrize.register_parametrization(module, "weight", quantizer, unsafe=True)
    info = ModelInfo(spec, InputSpec((1, 8, 8), (0.3,), (0.4,)), classes=[str(i) for i in range(10)])
    return model.eval(), info


@pytest.fixture
def compressed():
    """A fresh (model, info) from :func:`compressed_digits_cnn`."""
    return compressed_digits_cnn()


@pytest.fixture(scope="module")
def compressed_shared():
    """One (model, info) per test module; do not modify it."""
    return compressed_digits_cnn()


@pytest.fixture(scope="module")
def compressed_grid_shared():
    """One (model, info) per test module with a grid-stored classifier; do not modify it."""
    return compressed_digits_cnn(linear_fc=True)
