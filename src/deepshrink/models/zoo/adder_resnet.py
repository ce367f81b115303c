"""AdderNet ResNet-20 (Chen et al. 2020): the CIFAR ResNet-20 with adder convolutions.

Every convolution inside the three stages (the 3x3 ones and, with ``shortcut="B"``, the 1x1
projections) becomes an :class:`~deepshrink.models.layers.AdderConv2d` of the same shape; the
first convolution and the classifier stay multiplicative, as in the paper. Module names are
those of :class:`~deepshrink.models.zoo.resnet_cifar.CifarResNet`.
"""

from __future__ import annotations

from torch import nn

from deepshrink.models.layers import AdderConv2d
from deepshrink.models.registry import register_model
from deepshrink.models.zoo._common import check_positive
from deepshrink.models.zoo.resnet_cifar import CifarResNet

__all__ = ["AdderCifarResNet", "adder_like"]


def adder_like(conv: nn.Conv2d) -> AdderConv2d:
    """A freshly initialised adder layer with ``conv``'s channels, kernel, stride, padding and bias."""
    if conv.groups != 1 or tuple(conv.dilation) != (1, 1) or conv.padding_mode != "zeros":
        raise ValueError(f"no adder equivalent of {conv}")
    return AdderConv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                       conv.padding, bias=conv.bias is not None)


class AdderCifarResNet(CifarResNet):
    """:class:`CifarResNet` whose stage convolutions are adder layers (same arguments)."""

    def __init__(self, blocks: int, num_classes: int = 10, in_channels: int = 3,
                 shortcut: str = "A", width: int = 16) -> None:
        super().__init__(blocks, num_classes, in_channels, shortcut, width)
        for stage in (self.layer1, self.layer2, self.layer3):
            for module in list(stage.modules()):
                for name, child in module.named_children():
                    if isinstance(child, nn.Conv2d):
                        setattr(module, name, adder_like(child))


@register_model("adder-resnet20", default_input=(3, 32, 32),
                description="AdderNet ResNet-20 (Chen et al. 2020): adder convolutions in the three stages")
def adder_resnet20(num_classes: int = 10, in_channels: int = 3, image_size: int = 32,
                   shortcut: str = "A", width: int = 16) -> AdderCifarResNet:
    check_positive(image_size=image_size)
    return AdderCifarResNet(3, num_classes, in_channels, shortcut, width)
