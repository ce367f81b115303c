"""The architectures of the zoo; importing this package registers them all."""

from deepshrink.models.zoo import adder_resnet  # noqa: F401  (registers adder-resnet20)
from deepshrink.models.zoo.digits_cnn import DigitsCNN
from deepshrink.models.zoo.lenet import LeNet5, LeNet300
from deepshrink.models.zoo.resnet_cifar import BasicBlock, CifarResNet, ZeroPadShortcut
from deepshrink.models.zoo.vit import MLP, MultiHeadSelfAttention, TransformerBlock, VisionTransformer

__all__ = [
    "BasicBlock",
    "CifarResNet",
    "DigitsCNN",
    "LeNet300",
    "LeNet5",
    "MLP",
    "MultiHeadSelfAttention",
    "TransformerBlock",
    "VisionTransformer",
    "ZeroPadShortcut",
]
