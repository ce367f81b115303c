"""VGG-16 with BatchNorm (Simonyan & Zisserman 2015, configuration D), the classic filter-pruning
benchmark of Li et al. 2017 ("Pruning Filters for Efficient ConvNets").

``features``: 13 3x3 convs, each followed by BatchNorm and ReLU, in five stages of 64, 128, 256,
512, 512 channels (times ``width``), each stage ending in a 2x2 max-pool (32x down-sampling).
Module names follow torchvision's ``vgg16_bn`` (``features.0`` the first conv, ``classifier.N``).

``stem="cifar"`` (the default, Li et al.'s CIFAR-10 model): the 1x1 maps of a 32x32 input are
averaged to 512 features (a no-op at 32x32, so any input size works) -> Linear 512 -> BatchNorm1d
-> ReLU -> Linear; 313 M MACs and 15.0 M parameters for 10 classes. ``stem="imagenet"``:
torchvision's head for 224x224 inputs: adaptive average pool to 7x7 -> Linear 4096 -> ReLU ->
dropout -> Linear 4096 -> ReLU -> dropout -> Linear (138 M parameters).
"""

from __future__ import annotations

import torch
from torch import nn

from deepshrink.models.registry import register_model
from deepshrink.models.zoo._common import check_positive
from deepshrink.models.zoo._stem import check_fraction, check_stem

__all__ = ["VGG", "VGG16_LAYERS"]

VGG16_LAYERS = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


def _features(in_channels: int, layers, width: float) -> tuple[nn.Sequential, int]:
    """The conv-BN-ReLU stack with max-pools at ``"M"``, and its output channels."""
    modules: list[nn.Module] = []
    for layer in layers:
        if layer == "M":
            modules.append(nn.MaxPool2d(2, 2))
            continue
        out = max(1, round(layer * width))
        modules += [nn.Conv2d(in_channels, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU()]
        in_channels = out
    return nn.Sequential(*modules), in_channels


class VGG(nn.Module):
    """features -> avgpool -> flatten -> classifier; (N, C, H, W) -> (N, num_classes)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, stem: str = "cifar", width: float = 1.0,
                 dropout: float = 0.5, layers=VGG16_LAYERS) -> None:
        super().__init__()
        check_stem(stem)
        check_positive(num_classes=num_classes, in_channels=in_channels)
        if isinstance(width, bool) or not isinstance(width, (int, float)) or width <= 0:
            raise ValueError(f"width must be a positive number, got {width!r}")
        check_fraction("dropout", dropout)
        self.features, channels = _features(in_channels, layers, width)
        if stem == "cifar":
            hidden = max(1, round(512 * width))
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.classifier = nn.Sequential(nn.Linear(channels, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
                                            nn.Linear(hidden, num_classes))
        else:
            hidden = max(1, round(4096 * width))
            self.avgpool = nn.AdaptiveAvgPool2d(7)
            self.classifier = nn.Sequential(nn.Linear(channels * 49, hidden), nn.ReLU(), nn.Dropout(dropout),
                                            nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout),
                                            nn.Linear(hidden, num_classes))
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0, 0.01)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


@register_model("vgg16-bn", description="VGG-16 with BatchNorm, Li et al.'s CIFAR filter-pruning benchmark "
                "(512-512 head); stem=imagenet for torchvision's 224x224 head", default_input=(3, 32, 32))
def vgg16_bn(num_classes: int = 10, in_channels: int = 3, image_size: int = 32, stem: str = "cifar",
             width: float = 1.0, dropout: float = 0.5) -> VGG:
    check_positive(image_size=image_size)
    if image_size < 32:
        raise ValueError(f"VGG-16 halves the input five times: image_size must be at least 32, got {image_size}")
    return VGG(num_classes, in_channels, stem, width, dropout)
