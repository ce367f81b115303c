"""User-defined networks (not in the zoo) with a residual addition, a depthwise conv, a
squeeze-and-excitation gate and a concatenation; ``small_net`` is the builder the tests name."""

from __future__ import annotations

import torch
from torch import nn


class SqueezeExcite(nn.Module):
    """Channel gate: global pool, 1x1 reduce, ReLU, 1x1 expand, sigmoid, multiply."""

    def __init__(self, channels: int, reduced: int):
        super().__init__()
        self.reduce = nn.Conv2d(channels, reduced, 1)
        self.expand = nn.Conv2d(reduced, channels, 1)

    def forward(self, x):
        gate = torch.sigmoid(self.expand(torch.relu(self.reduce(x.mean((2, 3), keepdim=True)))))
        return x * gate


class UserNet(nn.Module):
    """Stem, a depthwise-separable block with a residual addition and an SE gate, two branches
    concatenated, pooled, a linear classifier."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: int = 16):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU())
        self.depthwise = nn.Conv2d(width, width, 3, padding=1, groups=width, bias=False)
        self.dw_bn = nn.BatchNorm2d(width)
        self.pointwise = nn.Conv2d(width, width, 1, bias=False)
        self.pw_bn = nn.BatchNorm2d(width)
        self.se = SqueezeExcite(width, max(width // 4, 2))
        self.left = nn.Conv2d(width, width, 3, padding=1)
        self.right = nn.Conv2d(width, width // 2, 1)
        self.head_bn = nn.BatchNorm2d(width + width // 2)
        self.fc = nn.Linear(width + width // 2, num_classes)

    def forward(self, x):
        x = self.stem(x)
        y = torch.relu(self.dw_bn(self.depthwise(x)))
        y = self.se(self.pw_bn(self.pointwise(y)))
        x = torch.relu(x + y)
        x = torch.relu(self.head_bn(torch.cat([self.left(x), self.right(x)], dim=1)))
        return self.fc(x.mean((2, 3)))


def small_net(num_classes: int = 10, in_channels: int = 1, image_size: int = 8, width: int = 16) -> UserNet:
    """The builder: ``userzoo.nets:small_net`` (``image_size`` is accepted and unused)."""
    return UserNet(num_classes, in_channels, width)


def not_a_model(num_classes: int = 10) -> str:
    return "no module here"
