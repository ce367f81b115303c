"""ImageNet ResNet-18/34/50 (He et al. 2016, "Deep Residual Learning", table 1).

Module names follow torchvision's ``resnet18/34/50`` (``conv1``, ``bn1``, ``maxpool``,
``layer1..4``, ``fc``; each block ``conv1..3``, ``bn1..3`` and a ``downsample`` Sequential of a
strided 1x1 conv and a BatchNorm), so a torchvision state dict loads by name. Stage widths are
``width`` x (1, 2, 4, 8), times 4 at the output of bottleneck blocks (ResNet-50).

``stem="imagenet"``: 7x7 stride-2 conv and 3x3 stride-2 max-pool, (N, C, 224, 224) -> layer1 at
56x56 -> layer4 at 7x7. ``stem="cifar"``: 3x3 stride-1 conv and no max-pool, for 32x32 inputs
-> layer1 at 32x32 -> layer4 at 4x4. Either way a global average pool feeds ``fc``.
"""

from __future__ import annotations

import torch
from torch import nn

from deepshrink.models.registry import register_model
from deepshrink.models.zoo._common import check_positive
from deepshrink.models.zoo._stem import check_stem

__all__ = ["Bottleneck", "ResNet", "ResidualBlock"]


def _downsample(in_channels: int, out_channels: int, stride: int) -> nn.Module | None:
    """The projection shortcut (1x1 conv + BN) when the block changes shape, else None."""
    if stride == 1 and in_channels == out_channels:
        return None
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                         nn.BatchNorm2d(out_channels))


class ResidualBlock(nn.Module):
    """The basic block: relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)), both convs 3x3;
    (N, in, H, W) -> (N, planes, H/s, W/s)."""

    expansion = 1

    def __init__(self, in_channels: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = _downsample(in_channels, planes, stride)
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        return self.relu2(self.bn2(self.conv2(out)) + identity)


class Bottleneck(nn.Module):
    """1x1 reduce to ``planes``, 3x3 (stride here, as torchvision's "ResNet v1.5"), 1x1 expand to
    4 x planes, plus the shortcut; (N, in, H, W) -> (N, 4 planes, H/s, W/s)."""

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out_channels = planes * self.expansion
        self.conv1 = nn.Conv2d(in_channels, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU()
        self.conv3 = nn.Conv2d(planes, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.downsample = _downsample(in_channels, out_channels, stride)
        self.relu3 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        return self.relu3(self.bn3(self.conv3(out)) + identity)


class ResNet(nn.Module):
    """``block`` repeated ``blocks[i]`` times in stage i+1 (stride 1, 2, 2, 2; widths
    ``width`` x 1, 2, 4, 8), after the ``stem``; global average pool, then ``fc``."""

    def __init__(self, block: type[nn.Module], blocks: list[int], num_classes: int = 1000,
                 in_channels: int = 3, stem: str = "imagenet", width: int = 64) -> None:
        super().__init__()
        check_stem(stem)
        check_positive(num_classes=num_classes, in_channels=in_channels, width=width)
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False)
            self.maxpool: nn.Module = nn.MaxPool2d(3, stride=2, padding=1)
        else:
            self.conv1 = nn.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False)
            self.maxpool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()
        channels = width
        for stage, count in enumerate(blocks):
            planes = width * 2**stage
            layers = [block(channels if i == 0 else planes * block.expansion, planes, 2 if i == 0 and stage else 1)
                      for i in range(count)]
            setattr(self, f"layer{stage + 1}", nn.Sequential(*layers))
            channels = planes * block.expansion
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        _init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _init(model: nn.Module) -> None:
    """torchvision's initialisation: He normal (fan-out) convolutions, BatchNorm scale 1 and shift 0."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


def _register(depth: int, block: type[nn.Module], blocks: list[int]):
    kind = "bottleneck" if block is Bottleneck else "basic"

    @register_model(
        f"resnet{depth}",
        description=f"ImageNet ResNet-{depth} (He et al. 2016), {kind} blocks {blocks}; stem=cifar for 32x32",
        default_input=(3, 224, 224),
    )
    def build(num_classes: int = 1000, in_channels: int = 3, image_size: int = 224,
              stem: str = "imagenet", width: int = 64) -> ResNet:
        check_positive(image_size=image_size)
        return ResNet(block, blocks, num_classes, in_channels, stem, width)

    build.__name__ = build.__qualname__ = f"resnet{depth}"
    return build


resnet18 = _register(18, ResidualBlock, [2, 2, 2, 2])
resnet34 = _register(34, ResidualBlock, [3, 4, 6, 3])
resnet50 = _register(50, Bottleneck, [3, 4, 6, 3])
