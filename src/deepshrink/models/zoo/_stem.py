"""The ``stem`` option of the ImageNet-style zoo models (ResNet-18/34/50, MobileNetV2, ShuffleNetV2,
DenseNet, VGG-16-BN).

``imagenet``: the published network for 224x224 inputs (a strided first layer, usually followed
by a max-pool); ``cifar``: the same body for 32x32 inputs, with the early down-sampling removed
so the last feature maps are still 4x4 (or, for VGG, Li et al.'s CIFAR classifier).
"""

from __future__ import annotations

STEMS = ("imagenet", "cifar")


def check_stem(stem: str) -> None:
    """Raise ValueError unless ``stem`` is one of :data:`STEMS`."""
    if stem not in STEMS:
        raise ValueError(f"stem must be one of {', '.join(STEMS)}, got {stem!r}")


def check_fraction(name: str, value: float, low: float = 0.0, high: float = 1.0) -> None:
    """Raise ValueError unless ``low <= value < high`` (a dropout rate, say)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value < high:
        raise ValueError(f"{name} must be in [{low}, {high}), got {value!r}")
