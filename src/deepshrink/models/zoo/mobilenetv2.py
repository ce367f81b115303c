"""MobileNetV2 (Sandler et al. 2018, "Inverted Residuals and Linear Bottlenecks", table 2).

Each :class:`InvertedResidual` block: 1x1 expansion by ``t`` (skipped when t = 1), 3x3 depthwise,
1x1 linear projection (no activation), ReLU6 after the first two, and the input added back when
the block keeps the shape. Module names follow torchvision's ``mobilenet_v2`` (``features.0`` the
stem, ``features.1..17`` the blocks with their layers in ``conv``, ``features.18`` the last 1x1
conv, ``classifier.1`` the Linear), so a torchvision state dict loads by name.

``width`` multiplies every layer's channels (rounded to multiples of 8; the last 1x1 conv keeps
1280 channels for widths below 1). ``stem="imagenet"``: the stride-2 stem and the first stride-2
block down-sample 224x224 inputs 32x to 7x7. ``stem="cifar"``: both strides are 1, so 32x32
inputs are down-sampled 8x to 4x4.
"""

from __future__ import annotations

import torch
from torch import nn

from deepshrink.models.registry import register_model
from deepshrink.models.zoo._common import check_positive
from deepshrink.models.zoo._stem import check_fraction, check_stem

__all__ = ["ConvBNReLU6", "InvertedResidual", "MobileNetV2"]

# expansion t, output channels c, blocks n, stride s of the first block (the paper's table 2)
SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
            (6, 320, 1, 1))


def make_divisible(value: float, divisor: int = 8) -> int:
    """``value`` rounded to the nearest multiple of ``divisor``, but not below 90 % of it."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class ConvBNReLU6(nn.Sequential):
    """Conv2d (no bias, "same" padding) -> BatchNorm2d -> ReLU6, as ``0``, ``1``, ``2``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 groups: int = 1) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, (kernel_size - 1) // 2, groups=groups,
                      bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU6(),
        )


class InvertedResidual(nn.Module):
    """(N, in, H, W) -> expand to in·t -> depthwise 3x3 (stride) -> project to out -> (N, out, H/s, W/s),
    plus x when stride is 1 and in = out."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = in_channels * expand_ratio
        self.use_residual = stride == 1 and in_channels == out_channels
        layers: list[nn.Module] = [ConvBNReLU6(in_channels, hidden, 1)] if expand_ratio != 1 else []
        layers += [ConvBNReLU6(hidden, hidden, 3, stride, groups=hidden),
                   nn.Conv2d(hidden, out_channels, 1, bias=False),
                   nn.BatchNorm2d(out_channels)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)


class MobileNetV2(nn.Module):
    """features (stem, 17 inverted residual blocks, 1x1 conv to 1280·max(1, width)) -> global
    average pool -> classifier (dropout, Linear)."""

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, width: float = 1.0,
                 stem: str = "imagenet", dropout: float = 0.2) -> None:
        super().__init__()
        check_stem(stem)
        check_positive(num_classes=num_classes, in_channels=in_channels)
        if isinstance(width, bool) or not isinstance(width, (int, float)) or width <= 0:
            raise ValueError(f"width must be a positive number, got {width!r}")
        check_fraction("dropout", dropout)
        first = 2 if stem == "imagenet" else 1
        channels = make_divisible(32 * width)
        last = make_divisible(1280 * max(1.0, width))
        layers: list[nn.Module] = [ConvBNReLU6(in_channels, channels, 3, first)]
        for index, (t, c, n, s) in enumerate(SETTINGS):
            out = make_divisible(c * width)
            stride = first if index == 1 else s  # the cifar stem keeps the first stride-2 stage at 1
            for i in range(n):
                layers.append(InvertedResidual(channels, out, stride if i == 0 else 1, t))
                channels = out
        layers.append(ConvBNReLU6(channels, last, 1))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(last, num_classes))
        _init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def _init(model: nn.Module) -> None:
    """torchvision's initialisation: He normal (fan-out) convs, BatchNorm 1/0, Linear N(0, 0.01)."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0, 0.01)
            nn.init.zeros_(module.bias)


@register_model("mobilenetv2", description="MobileNetV2 (Sandler et al. 2018), width multiplier; stem=cifar for 32x32",
                default_input=(3, 224, 224))
def mobilenetv2(num_classes: int = 1000, in_channels: int = 3, image_size: int = 224, width: float = 1.0,
                stem: str = "imagenet", dropout: float = 0.2) -> MobileNetV2:
    check_positive(image_size=image_size)
    return MobileNetV2(num_classes, in_channels, width, stem, dropout)
