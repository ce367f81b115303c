"""ShuffleNetV2 (Ma et al. 2018, "Practical Guidelines for Efficient CNN Architecture Design").

A unit of stride 1 splits its input channels in two halves (``chunk``), passes the first half
through unchanged and the second through ``branch2`` (1x1, 3x3 depthwise, 1x1), concatenates
them and shuffles the channels (view / transpose / view) so the next unit's halves mix both. A
unit of stride 2 feeds its whole input to both branches (``branch1``: 3x3 depthwise stride 2,
1x1), doubling the channels. Module names follow torchvision's ``shufflenet_v2_x*`` (``conv1``,
``stage2..4``, ``conv5``, ``fc``), so a torchvision state dict loads by name.

``width`` is one of the paper's multipliers 0.5, 1.0, 1.5, 2.0 (stage widths in
:data:`STAGE_CHANNELS`). ``stem="imagenet"``: stride-2 3x3 conv and 3x3 stride-2 max-pool, 224x224
-> 7x7 at the end; ``stem="cifar"``: stride 1 and no max-pool, 32x32 -> 4x4.
"""

from __future__ import annotations

import torch
from torch import nn

from deepshrink.models.registry import register_model
from deepshrink.models.zoo._common import check_positive
from deepshrink.models.zoo._stem import check_stem

__all__ = ["STAGE_CHANNELS", "ShuffleNetV2", "ShuffleUnit", "channel_shuffle"]

STAGE_CHANNELS = {0.5: (24, 48, 96, 192, 1024), 1.0: (24, 116, 232, 464, 1024),
                  1.5: (24, 176, 352, 704, 1024), 2.0: (24, 244, 488, 976, 2048)}
STAGE_BLOCKS = (4, 8, 4)


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, H, W) with channel g·(C/groups) + i moved to i·groups + g."""
    n, c, h, w = x.size()
    x = x.view(n, groups, c // groups, h, w).transpose(1, 2).contiguous()
    return x.view(n, c, h, w)


def _conv_bn(in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1,
             depthwise: bool = False, relu: bool = True) -> list[nn.Module]:
    layers = [nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, bias=False,
                        groups=in_channels if depthwise else 1),
              nn.BatchNorm2d(out_channels)]
    return layers + [nn.ReLU()] if relu else layers


class ShuffleUnit(nn.Module):
    """(N, in, H, W) -> (N, out, H/s, W/s); stride 1 needs in = out (split into halves)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        if out_channels % 2 or (stride == 1 and in_channels != out_channels):
            raise ValueError(f"a stride-{stride} unit cannot map {in_channels} to {out_channels} channels")
        self.stride = stride
        half = out_channels // 2
        if stride > 1:
            self.branch1 = nn.Sequential(*_conv_bn(in_channels, in_channels, 3, stride, depthwise=True, relu=False),
                                         *_conv_bn(in_channels, half))
        else:
            self.branch1 = nn.Sequential()
        self.branch2 = nn.Sequential(*_conv_bn(in_channels if stride > 1 else half, half),
                                     *_conv_bn(half, half, 3, stride, depthwise=True, relu=False),
                                     *_conv_bn(half, half))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


class ShuffleNetV2(nn.Module):
    """conv1 (3x3) -> maxpool -> stage2..4 (4, 8, 4 units, the first of each of stride 2) -> conv5
    (1x1) -> global average pool -> fc."""

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, width: float = 1.0,
                 stem: str = "imagenet") -> None:
        super().__init__()
        check_stem(stem)
        check_positive(num_classes=num_classes, in_channels=in_channels)
        if width not in STAGE_CHANNELS:
            raise ValueError(f"width must be one of {', '.join(map(str, STAGE_CHANNELS))}, got {width!r}")
        channels = STAGE_CHANNELS[width]
        stride = 2 if stem == "imagenet" else 1
        self.conv1 = nn.Sequential(*_conv_bn(in_channels, channels[0], 3, stride))
        self.maxpool = nn.MaxPool2d(3, 2, 1) if stem == "imagenet" else nn.Identity()
        for stage, (blocks, out) in enumerate(zip(STAGE_BLOCKS, channels[1:4])):
            units = [ShuffleUnit(channels[stage] if i == 0 else out, out, 2 if i == 0 else 1) for i in range(blocks)]
            setattr(self, f"stage{stage + 2}", nn.Sequential(*units))
        self.conv5 = nn.Sequential(*_conv_bn(channels[3], channels[4]))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels[4], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.conv1(x))
        x = self.conv5(self.stage4(self.stage3(self.stage2(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


@register_model("shufflenetv2", description="ShuffleNetV2 (Ma et al. 2018), channel split + shuffle, "
                "width 0.5/1.0/1.5/2.0; stem=cifar for 32x32", default_input=(3, 224, 224))
def shufflenetv2(num_classes: int = 1000, in_channels: int = 3, image_size: int = 224, width: float = 1.0,
                 stem: str = "imagenet") -> ShuffleNetV2:
    check_positive(image_size=image_size)
    return ShuffleNetV2(num_classes, in_channels, width, stem)
