"""CIFAR ResNet-(6n+2) of He et al. 2016 ("Deep Residual Learning", section 4.2).

Module names follow akamaster/pytorch_resnet_cifar10 so its checkpoints load by name:
``conv1``, ``bn1``, ``layer1..3`` (each an ``nn.Sequential`` of :class:`BasicBlock`) and ``linear``.
Input (N, C, H, W) -> logits (N, num_classes); the feature maps have width, 2*width and
4*width channels at H, H/2 and H/4 (rounded up).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from deepshrink.models.channels import register_channel_placer
from deepshrink.models.registry import register_model
from deepshrink.models.zoo._common import check_positive

__all__ = ["BasicBlock", "CifarResNet", "ZeroPadShortcut"]


@register_channel_placer  # structured pruning may move its channels; files record it as an override
class ZeroPadShortcut(nn.Module):
    """Parameter-free option-A shortcut: subsample by ``stride``, zero-pad channels.

    (N, in_channels, H, W) -> (N, out_channels, ceil(H/stride), ceil(W/stride)); the input
    channels land at ``pad_front .. pad_front + in_channels``, with ``pad_front =
    (out_channels - in_channels) // 2`` zero channels before them and the rest after.
    Structured pruning may leave them at other output channels: ``positions`` (increasing,
    one per input channel) then says where each input channel lands.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int,
                 positions: list[int] | None = None) -> None:
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(f"option-A shortcut cannot shrink {in_channels} to {out_channels} channels")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = stride
        if positions is None:
            positions = list(range((out_channels - in_channels) // 2, (out_channels + in_channels) // 2))
        positions = [int(p) for p in positions]
        if len(positions) != in_channels or positions != sorted(set(positions)) or (
                positions and not 0 <= positions[0] <= positions[-1] < out_channels):
            raise ValueError(f"positions must be {in_channels} increasing channels below {out_channels}")
        self.positions = positions
        self.pad_front = positions[0] if positions else out_channels
        self.pad_back = out_channels - in_channels - self.pad_front
        contiguous = positions == list(range(self.pad_front, self.pad_front + in_channels))
        self.register_buffer("index", None if contiguous else torch.tensor(positions), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        if self.index is None:
            return F.pad(x, (0, 0, 0, 0, self.pad_front, self.pad_back))
        out = x.new_zeros(x.shape[0], self.out_channels, *x.shape[2:])
        return out.index_copy(1, self.index, x)

    def constructor_args(self) -> dict:
        """The keyword arguments that rebuild this module (JSON values)."""
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "stride": self.stride, "positions": list(self.positions)}

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, stride={self.stride}"


class BasicBlock(nn.Module):
    """relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)); (N, in, H, W) -> (N, out, H/s, W/s)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, shortcut: str = "A") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        if stride == 1 and in_channels == out_channels:
            self.shortcut: nn.Module = nn.Identity()
        elif shortcut == "A":
            self.shortcut = ZeroPadShortcut(in_channels, out_channels, stride)
        else:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet with ``blocks`` BasicBlocks per stage (depth 6*blocks + 2).

    (N, in_channels, H, W) -> conv1/bn1/relu (N, w, H, W) -> layer1 (N, w, H, W)
    -> layer2 (N, 2w, H/2, W/2) -> layer3 (N, 4w, H/4, W/4) -> global average pool
    -> linear -> (N, num_classes).
    """

    def __init__(
        self,
        blocks: int,
        num_classes: int = 10,
        in_channels: int = 3,
        shortcut: str = "A",
        width: int = 16,
    ) -> None:
        super().__init__()
        if shortcut not in ("A", "B"):
            raise ValueError(f"shortcut must be 'A' or 'B', got {shortcut!r}")
        check_positive(blocks=blocks, num_classes=num_classes, in_channels=in_channels, width=width)
        self.conv1 = nn.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.layer1 = self._stage(width, width, blocks, 1, shortcut)
        self.layer2 = self._stage(width, 2 * width, blocks, 2, shortcut)
        self.layer3 = self._stage(2 * width, 4 * width, blocks, 2, shortcut)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(4 * width, num_classes)
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight)

    @staticmethod
    def _stage(in_channels: int, out_channels: int, blocks: int, stride: int, shortcut: str) -> nn.Sequential:
        layers = [BasicBlock(in_channels, out_channels, stride, shortcut)]
        layers += [BasicBlock(out_channels, out_channels, 1, shortcut) for _ in range(blocks - 1)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.linear(torch.flatten(self.pool(x), 1))


def _register(depth: int):
    blocks = (depth - 2) // 6

    @register_model(
        f"resnet{depth}",
        description=f"CIFAR ResNet-{depth} (He et al. 2016), {blocks} blocks per stage, option-A shortcuts",
        default_input=(3, 32, 32),
    )
    def build(
        num_classes: int = 10,
        in_channels: int = 3,
        image_size: int = 32,
        shortcut: str = "A",
        width: int = 16,
    ) -> CifarResNet:
        check_positive(image_size=image_size)
        return CifarResNet(blocks, num_classes, in_channels, shortcut, width)

    build.__name__ = build.__qualname__ = f"resnet{depth}"
    return build


resnet20 = _register(20)
resnet32 = _register(32)
resnet44 = _register(44)
resnet56 = _register(56)
resnet110 = _register(110)
