"""LeNet-5 (LeCun et al. 1998) and the fully connected LeNet-300-100."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from deepshrink.models.registry import register_model
from deepshrink.models.zoo._common import check_positive

__all__ = ["LeNet5", "LeNet300"]


class LeNet5(nn.Module):
    """conv1 (5x5, pad 2) -> relu -> maxpool 2 -> conv2 (5x5) -> relu -> maxpool 2 -> fc1 120
    -> relu -> fc2 84 -> relu -> fc3.

    (N, C, S, S) -> (N, 6, S/2, S/2) -> (N, 16, F, F) -> (N, num_classes), with
    F = (S//2 - 4 + 2p) // 2 where conv2 pads p = 2 for S < 16 (e.g. 8x8 digits) and 0 otherwise:
    F = 5 for 28x28, 6 for 32x32, 2 for 8x8.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, image_size: int = 28) -> None:
        super().__init__()
        check_positive(num_classes=num_classes, in_channels=in_channels, image_size=image_size)
        pad2 = 2 if image_size < 16 else 0
        feature = (image_size // 2 - 4 + 2 * pad2) // 2
        if feature < 1:
            raise ValueError(f"LeNet-5 needs images of at least 4x4 pixels, got {image_size}")
        self.conv1 = nn.Conv2d(in_channels, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5, padding=pad2)
        self.fc1 = nn.Linear(16 * feature * feature, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.fc1(torch.flatten(x, 1)))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class LeNet300(nn.Module):
    """LeNet-300-100: (N, C, S, S) -> flatten (N, C*S*S) -> fc1 300 -> relu [-> drop1]
    -> fc2 100 -> relu [-> drop2] -> fc3 -> (N, num_classes)."""

    def __init__(
        self, num_classes: int = 10, in_channels: int = 1, image_size: int = 28, dropout: float = 0.0
    ) -> None:
        super().__init__()
        check_positive(num_classes=num_classes, in_channels=in_channels, image_size=image_size)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.fc1 = nn.Linear(in_channels * image_size * image_size, 300)
        self.fc2 = nn.Linear(300, 100)
        self.fc3 = nn.Linear(100, num_classes)
        self.drop1 = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.drop2 = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop1(F.relu(self.fc1(torch.flatten(x, 1))))
        x = self.drop2(F.relu(self.fc2(x)))
        return self.fc3(x)


@register_model("lenet5", description="LeNet-5: two 5x5 convolutions and three fully connected layers",
                default_input=(1, 28, 28))
def lenet5(num_classes: int = 10, in_channels: int = 1, image_size: int = 28) -> LeNet5:
    return LeNet5(num_classes, in_channels, image_size)


@register_model("lenet300", description="LeNet-300-100: three fully connected layers",
                default_input=(1, 28, 28))
def lenet300(num_classes: int = 10, in_channels: int = 1, image_size: int = 28,
             dropout: float = 0.0) -> LeNet300:
    return LeNet300(num_classes, in_channels, image_size, dropout)
