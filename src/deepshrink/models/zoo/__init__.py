"""The architectures of the zoo; importing this package registers them all."""

from deepshrink.models.zoo import adder_resnet  # noqa: F401  (registers adder-resnet20)
from deepshrink.models.zoo.densenet import DenseNet
from deepshrink.models.zoo.digits_cnn import DigitsCNN
from deepshrink.models.zoo.lenet import LeNet5, LeNet300
from deepshrink.models.zoo.mobilenetv2 import InvertedResidual, MobileNetV2
from deepshrink.models.zoo.resnet_cifar import BasicBlock, CifarResNet, ZeroPadShortcut
from deepshrink.models.zoo.resnet_imagenet import Bottleneck, ResidualBlock, ResNet
from deepshrink.models.zoo.shufflenetv2 import ShuffleNetV2, ShuffleUnit
from deepshrink.models.zoo.vgg import VGG
from deepshrink.models.zoo.vit import MLP, MultiHeadSelfAttention, TransformerBlock, VisionTransformer

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "CifarResNet",
    "DenseNet",
    "DigitsCNN",
    "InvertedResidual",
    "LeNet300",
    "LeNet5",
    "MLP",
    "MobileNetV2",
    "MultiHeadSelfAttention",
    "ResNet",
    "ResidualBlock",
    "ShuffleNetV2",
    "ShuffleUnit",
    "TransformerBlock",
    "VGG",
    "VisionTransformer",
    "ZeroPadShortcut",
]
