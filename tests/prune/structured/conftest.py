"""Small models for the structured-pruning tests: concatenation, depthwise-separable, flatten,
grouped convolution."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn


class ConcatNet(nn.Module):
    """Two branches (4 and 6 channels) concatenated into a 3x3 conv; (N, 3, 8, 8) -> (N, 5)."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.bn_a = nn.BatchNorm2d(4)
        self.b = nn.Conv2d(3, 6, 1)
        self.c = nn.Conv2d(10, 8, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        y = torch.cat([F.relu(self.bn_a(self.a(x))), torch.relu(self.b(x))], dim=1)
        return self.fc(torch.flatten(self.pool(F.relu(self.c(y))), 1))


class SeparableNet(nn.Module):
    """conv 3->8, BN, ReLU, depthwise 3x3 (8 groups), BN, ReLU, pointwise 8->12, 1-output conv,
    flatten of the 1x4x4 map into a Linear; (N, 3, 4, 4) -> (N, 5)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn0 = nn.BatchNorm2d(8)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.bn1 = nn.BatchNorm2d(8)
        self.pw = nn.Conv2d(8, 12, 1)
        self.single = nn.Conv2d(12, 1, 1)
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        x = F.relu(self.bn0(self.stem(x)))
        x = F.relu(self.bn1(self.dw(x)))
        x = self.single(F.relu(self.pw(x)))
        return self.fc(x.flatten(1))


class FlattenNet(nn.Module):
    """conv 3->4 on a 2x2 map, flatten (16 features: channel c -> features 4c..4c+3), Linear, ReLU, Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.fc1 = nn.Linear(16, 6)
        self.fc2 = nn.Linear(6, 3)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(self.conv(x).view(x.size(0), -1))))


class GroupedNet(nn.Module):
    """conv 3->8, a grouped conv 8->12 of 4 groups (2 inputs, 3 filters each; not depthwise), BN,
    ReLU, conv 12->4."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 1)
        self.g = nn.Conv2d(8, 12, 3, padding=1, groups=4)
        self.bn = nn.BatchNorm2d(12)
        self.b = nn.Conv2d(12, 4, 1)

    def forward(self, x):
        return self.b(F.relu(self.bn(self.g(F.relu(self.a(x))))))


def randomize_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics and affine parameters, so tests see real normalisation."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=gen) * 0.1)
    return model


@pytest.fixture
def small_models():
    """name -> (model in eval mode, input shape (C, H, W))."""
    torch.manual_seed(0)
    return {
        "concat": (randomize_batchnorm(ConcatNet()).eval(), (3, 8, 8)),
        "separable": (randomize_batchnorm(SeparableNet()).eval(), (3, 4, 4)),
        "flatten": (FlattenNet().eval(), (3, 2, 2)),
        "grouped": (randomize_batchnorm(GroupedNet()).eval(), (3, 4, 4)),
    }
