"""The corpus for the structured-pruning coverage matrix (issue 23, item 3): small pattern models
and small zoo models, each as ``name -> (factory, input shape (C, H, W), classifier module name)``.

Every factory returns a fresh model in eval mode with non-trivial BatchNorm statistics (so
outputs checked after zeroing really test the normalisation)."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from deepshrink.models import build_model, make_spec


def randomize_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=gen) * 0.1)
    return model


def cbr(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU())


class Head(nn.Module):
    def __init__(self, cin: int, classes: int = 10) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(x), 1))


class Depthwise(nn.Module):
    """MobileNet-style separable block: conv, depthwise 3x3 (in = out = groups), pointwise."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = cbr(3, 16)
        self.dw = cbr(16, 16, groups=16)
        self.pw = cbr(16, 32, k=1)
        self.dw2 = cbr(32, 32, stride=2, groups=32)
        self.pw2 = cbr(32, 32, k=1)
        self.head = Head(32)

    def forward(self, x):
        return self.head(self.pw2(self.dw2(self.pw(self.dw(self.stem(x))))))


class Grouped(nn.Module):
    """Grouped convs (4 groups, not depthwise) between regular convs."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = cbr(3, 16)
        self.g1 = cbr(16, 32, groups=4)
        self.g2 = cbr(32, 32, groups=4)
        self.out = cbr(32, 32, k=1)
        self.head = Head(32)

    def forward(self, x):
        return self.head(self.out(self.g2(self.g1(self.stem(x)))))


def shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    n, c, h, w = x.size()
    x = x.view(n, groups, c // groups, h, w).transpose(1, 2).contiguous()
    return x.view(n, c, h, w)


class ChannelShuffle(nn.Module):
    """Grouped 1x1 conv, channel shuffle (view / transpose / view), grouped 1x1 conv."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = cbr(3, 16)
        self.g1 = cbr(16, 32, k=1, groups=4)
        self.g2 = cbr(32, 32, k=1, groups=4)
        self.out = cbr(32, 32, k=1)
        self.head = Head(32)

    def forward(self, x):
        return self.head(self.out(self.g2(shuffle(self.g1(self.stem(x)), 4))))


class SplitChunk(nn.Module):
    """Split (torch.split) and chunk into branches, processed and concatenated back."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = cbr(3, 32)
        self.a = cbr(16, 16)
        self.b = cbr(16, 16)
        self.mid = cbr(32, 32)
        self.c = cbr(16, 16)
        self.out = cbr(32, 32, k=1)
        self.head = Head(32)

    def forward(self, x):
        x = self.stem(x)
        left, right = torch.split(x, 16, dim=1)
        x = self.mid(torch.cat([self.a(left), self.b(right)], 1))
        p, q = x.chunk(2, dim=1)
        return self.head(self.out(torch.cat([p, self.c(q)], 1)))


class Concat(nn.Module):
    """Two branches of different widths concatenated (DenseNet-like reuse of the stem)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = cbr(3, 16)
        self.a = cbr(16, 16)
        self.b = cbr(16, 24, k=1)
        self.fuse = cbr(16 + 16 + 24, 32, k=1)
        self.head = Head(32)

    def forward(self, x):
        x = self.stem(x)
        return self.head(self.fuse(torch.cat([x, self.a(x), self.b(x)], 1)))


class SqueezeExcite(nn.Module):
    """A channel gate: global pool, FC down, FC up, sigmoid, multiplied into the feature map."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = cbr(3, 16)
        self.conv = cbr(16, 32)
        self.se_pool = nn.AdaptiveAvgPool2d(1)
        self.se_down = nn.Conv2d(32, 8, 1)
        self.se_up = nn.Conv2d(8, 32, 1)
        self.out = cbr(32, 32, k=1)
        self.head = Head(32)

    def forward(self, x):
        x = self.conv(self.stem(x))
        gate = torch.sigmoid(self.se_up(F.relu(self.se_down(self.se_pool(x)))))
        return self.head(self.out(x * gate))


class Inception(nn.Module):
    """Inception-like block: 1x1, 1x1 -> 3x3, 1x1 -> 5x5, pool -> 1x1, concatenated."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = cbr(3, 16)
        self.b1 = cbr(16, 8, k=1)
        self.b2 = nn.Sequential(cbr(16, 12, k=1), cbr(12, 16))
        self.b3 = nn.Sequential(cbr(16, 4, k=1), cbr(4, 8, k=5))
        self.b4_pool = nn.MaxPool2d(3, 1, 1)
        self.b4 = cbr(16, 8, k=1)
        self.out = cbr(40, 32, k=1)
        self.head = Head(32)

    def forward(self, x):
        x = self.stem(x)
        y = torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(self.b4_pool(x))], 1)
        return self.head(self.out(y))


class CalledTwice(nn.Module):
    """One conv module applied twice (shared weights): its input and output channels couple."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = cbr(3, 16)
        self.shared = nn.Conv2d(16, 16, 3, padding=1)
        self.mid = cbr(16, 32)
        self.head = Head(32)

    def forward(self, x):
        x = self.stem(x)
        x = F.relu(self.shared(F.relu(self.shared(x))))
        return self.head(self.mid(x))


class TransposedUpsample(nn.Module):
    """Downsampling conv, transposed conv (stride 2), nearest upsampling, conv, head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = cbr(3, 16, stride=2)
        self.down = cbr(16, 32, stride=2)
        self.up = nn.ConvTranspose2d(32, 16, 2, stride=2)
        self.bn_up = nn.BatchNorm2d(16)
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        self.out = cbr(16, 32)
        self.head = Head(32)

    def forward(self, x):
        x = F.relu(self.bn_up(self.up(self.down(self.stem(x)))))
        return self.head(self.out(self.upsample(x)))


class FlattenLinear(nn.Module):
    """Convs, then the 4x4 map flattened straight into a Linear (channel c -> 16 features)."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = cbr(3, 16, stride=2)
        self.c2 = cbr(16, 32, stride=2)
        self.fc1 = nn.Linear(32 * 4 * 4, 64)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = self.c2(self.c1(x))
        return self.fc(F.relu(self.fc1(torch.flatten(x, 1))))


def _pattern(cls) -> Callable[[], nn.Module]:
    def make():
        torch.manual_seed(0)
        return randomize_batchnorm(cls()).eval()
    return make


def _zoo(name: str, **options) -> Callable[[], nn.Module]:
    def make():
        torch.manual_seed(0)
        return randomize_batchnorm(build_model(make_spec(name, **options))).eval()
    return make


# name -> (factory, input shape, classifier module name)
PATTERNS: dict[str, tuple[Callable[[], nn.Module], tuple[int, int, int], str]] = {
    "depthwise": (_pattern(Depthwise), (3, 16, 16), "head.fc"),
    "grouped conv": (_pattern(Grouped), (3, 16, 16), "head.fc"),
    "channel shuffle": (_pattern(ChannelShuffle), (3, 16, 16), "head.fc"),
    "split/chunk": (_pattern(SplitChunk), (3, 16, 16), "head.fc"),
    "concatenation": (_pattern(Concat), (3, 16, 16), "head.fc"),
    "squeeze-excitation": (_pattern(SqueezeExcite), (3, 16, 16), "head.fc"),
    "inception block": (_pattern(Inception), (3, 16, 16), "head.fc"),
    "module called twice": (_pattern(CalledTwice), (3, 16, 16), "head.fc"),
    "transposed conv + upsample": (_pattern(TransposedUpsample), (3, 16, 16), "head.fc"),
    "flatten into Linear": (_pattern(FlattenLinear), (3, 16, 16), "fc"),
}

ZOO: dict[str, tuple[Callable[[], nn.Module], tuple[int, int, int], str]] = {
    "vit-tiny (dim 64, depth 2)": (_zoo("vit-tiny", image_size=16, dim=64, depth=2, mlp_dim=128), (3, 16, 16), "head"),
    "resnet20 (width 8)": (_zoo("resnet20", width=8, image_size=16), (3, 16, 16), "linear"),
    "resnet18 stem=cifar (width 16)": (_zoo("resnet18", stem="cifar", width=16, image_size=32), (3, 32, 32), "fc"),
    "mobilenetv2 stem=cifar (width 0.5)": (_zoo("mobilenetv2", stem="cifar", width=0.5, image_size=32), (3, 32, 32),
                                           "classifier.1"),
    "shufflenetv2 stem=cifar (width 0.5)": (_zoo("shufflenetv2", stem="cifar", width=0.5, image_size=32), (3, 32, 32),
                                            "fc"),
    "densenet (growth 6, blocks 3x3)": (_zoo("densenet", growth_rate=6, blocks=[3, 3, 3], image_size=32), (3, 32, 32),
                                        "classifier"),
    "vgg16-bn (width 0.25)": (_zoo("vgg16-bn", width=0.25, image_size=32), (3, 32, 32), "classifier.3"),
}

CORPUS = {**PATTERNS, **ZOO}
