"""A small CNN for the 8x8 grey-scale digits of scikit-learn."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from deepshrink.models.registry import register_model
from deepshrink.models.zoo._common import check_positive

__all__ = ["DigitsCNN"]


class DigitsCNN(nn.Module):
    """(N, C, S, S) -> conv1/bn1/relu (N, 16, S, S) -> conv2/bn2/relu (N, 32, S, S)
    -> maxpool 2 (N, 32, S/2, S/2) -> conv3/bn3/relu (N, 64, S/2, S/2) -> global average pool
    -> fc -> (N, num_classes). All convolutions are 3x3 with padding 1."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, image_size: int = 8) -> None:
        super().__init__()
        check_positive(num_classes=num_classes, in_channels=in_channels, image_size=image_size)
        if image_size < 2:
            raise ValueError(f"digits-cnn needs images of at least 2x2 pixels, got {image_size}")
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(32)
        self.pool = nn.MaxPool2d(2)
        self.conv3 = nn.Conv2d(32, 64, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(64)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.pool(F.relu(self.bn2(self.conv2(x))))
        x = F.relu(self.bn3(self.conv3(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


@register_model("digits-cnn", description="small 3-layer CNN with BatchNorm for the 8x8 digits",
                default_input=(1, 8, 8))
def digits_cnn(num_classes: int = 10, in_channels: int = 1, image_size: int = 8) -> DigitsCNN:
    return DigitsCNN(num_classes, in_channels, image_size)
