"""A small DenseNet-BC (Huang et al. 2017, "Densely Connected Convolutional Networks").

Inside a dense block every :class:`DenseLayer` (BN, ReLU, 1x1 conv to ``bn_size`` x growth,
BN, ReLU, 3x3 conv to ``growth_rate``) concatenates its ``growth_rate`` new channels to its
input, so a block of L layers grows c channels to c + L·growth_rate. A :class:`Transition` between
blocks (BN, ReLU, 1x1 conv keeping ``compression`` of the channels, 2x2 average pool) halves the
resolution. Module names follow torchvision's ``densenet121`` (``features.conv0``,
``features.denseblock1.denselayer1.conv1``, ``features.transition1``, ``features.norm5``,
``classifier``).

The defaults (growth 12, blocks (6, 6, 6), 2·growth stem channels, compression 0.5) make
DenseNet-BC-40 for 32x32 inputs. ``stem="cifar"``: one 3x3 conv, blocks at 32, 16, 8;
``stem="imagenet"``: 7x7 stride-2 conv, BN, ReLU, 3x3 stride-2 max-pool (use four blocks, as
DenseNet-121's (6, 12, 24, 16) with growth 32, for 224x224 inputs).
"""

from __future__ import annotations

import torch
from torch import nn

from deepshrink.models.registry import register_model
from deepshrink.models.zoo._common import check_positive
from deepshrink.models.zoo._stem import check_stem

__all__ = ["DenseBlock", "DenseLayer", "DenseNet", "Transition"]


class DenseLayer(nn.Module):
    """(N, c, H, W) -> (N, c + growth_rate, H, W): the input with the layer's new channels appended."""

    def __init__(self, in_channels: int, growth_rate: int, bn_size: int) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(in_channels)
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv2d(in_channels, bn_size * growth_rate, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth_rate)
        self.relu2 = nn.ReLU()
        self.conv2 = nn.Conv2d(bn_size * growth_rate, growth_rate, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        new = self.conv2(self.relu2(self.norm2(self.conv1(self.relu1(self.norm1(x))))))
        return torch.cat([x, new], dim=1)


class DenseBlock(nn.Sequential):
    """``layers`` DenseLayers as ``denselayer1..L``: (N, c, H, W) -> (N, c + L·growth_rate, H, W)."""

    def __init__(self, layers: int, in_channels: int, growth_rate: int, bn_size: int) -> None:
        super().__init__()
        for i in range(layers):
            self.add_module(f"denselayer{i + 1}", DenseLayer(in_channels + i * growth_rate, growth_rate, bn_size))


class Transition(nn.Sequential):
    """BN, ReLU, 1x1 conv, 2x2 average pool: (N, c, H, W) -> (N, out, H/2, W/2)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(in_channels)
        self.relu = nn.ReLU()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.pool = nn.AvgPool2d(2, stride=2)


class DenseNet(nn.Module):
    """features (stem, dense blocks with transitions between them, final BN and ReLU) -> global
    average pool -> classifier."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, growth_rate: int = 12,
                 blocks: tuple[int, ...] = (6, 6, 6), bn_size: int = 4, compression: float = 0.5,
                 stem: str = "cifar") -> None:
        super().__init__()
        check_stem(stem)
        check_positive(num_classes=num_classes, in_channels=in_channels, growth_rate=growth_rate, bn_size=bn_size,
                       **{f"blocks[{i}]": n for i, n in enumerate(blocks)})
        if not blocks:
            raise ValueError("blocks must list at least one dense block")
        if isinstance(compression, bool) or not isinstance(compression, (int, float)) or not 0 < compression <= 1:
            raise ValueError(f"compression must be in (0, 1], got {compression!r}")
        channels = 2 * growth_rate
        self.features = nn.Sequential()
        if stem == "imagenet":
            self.features.add_module("conv0", nn.Conv2d(in_channels, channels, 7, 2, 3, bias=False))
            self.features.add_module("norm0", nn.BatchNorm2d(channels))
            self.features.add_module("relu0", nn.ReLU())
            self.features.add_module("pool0", nn.MaxPool2d(3, 2, 1))
        else:
            self.features.add_module("conv0", nn.Conv2d(in_channels, channels, 3, 1, 1, bias=False))
        for i, layers in enumerate(blocks):
            self.features.add_module(f"denseblock{i + 1}", DenseBlock(layers, channels, growth_rate, bn_size))
            channels += layers * growth_rate
            if i < len(blocks) - 1:
                out = max(1, int(channels * compression))
                self.features.add_module(f"transition{i + 1}", Transition(channels, out))
                channels = out
        self.features.add_module("norm5", nn.BatchNorm2d(channels))
        self.features.add_module("relu5", nn.ReLU())
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight)
            elif isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


@register_model("densenet", description="small DenseNet-BC (Huang et al. 2017): growth 12, blocks 6-6-6 "
                "(DenseNet-BC-40) for 32x32; stem=imagenet for 224x224", default_input=(3, 32, 32))
def densenet(num_classes: int = 10, in_channels: int = 3, image_size: int = 32, growth_rate: int = 12,
             blocks: list[int] | None = None, bn_size: int = 4, compression: float = 0.5,
             stem: str = "cifar") -> DenseNet:
    check_positive(image_size=image_size)
    blocks = (6, 6, 6) if blocks is None else blocks
    if not isinstance(blocks, (list, tuple)):
        raise ValueError(f"blocks must be a list of layer counts, got {blocks!r}")
    return DenseNet(num_classes, in_channels, growth_rate, tuple(blocks), bn_size, compression, stem)
