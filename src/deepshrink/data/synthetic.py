"""A seeded, learnable synthetic image set for tests: one smooth random pattern per class plus noise."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from deepshrink.data.dataset import Augment, ImageDataset, check_split
from deepshrink.errors import UserError

_NOISE = 24.0  # std of the per-pixel Gaussian noise, in 0..255 pixel units
_LOW, _HIGH = 48.0, 208.0  # range of the class templates, in pixel units


def make_synthetic(
    split: str,
    *,
    num_classes: int = 4,
    num_images: int | None = None,
    channels: int = 3,
    size: int = 16,
    seed: int = 0,
) -> ImageDataset:
    """``num_images`` (default 256 for "train", 128 for "test") uint8 images (N, channels, size, size).

    Class k's images are a fixed smooth random template (a 4 x 4 random grid, bilinearly upsampled)
    plus Gaussian noise (std 24 pixel units), clipped to 0..255. Labels cycle 0, 1, ..., k-1, so every
    class has ``num_images // num_classes`` or one more images. The templates depend only on
    ``seed``; the noise on ``seed`` and ``split``, so train and test differ only in noise.
    ``mean``/``std`` are those of template plus noise (ignoring the rare clipping).
    """
    check_split("synthetic", split)
    num_images = (256 if split == "train" else 128) if num_images is None else num_images
    if min(num_classes - 1, num_images, channels, size) < 1:
        raise UserError("synthetic: need num_classes >= 2 and num_images, channels, size >= 1")
    grid = torch.rand(num_classes, channels, 4, 4, generator=torch.Generator().manual_seed(seed))
    templates = F.interpolate(grid, size=(size, size), mode="bilinear", align_corners=True)
    templates = _LOW + (_HIGH - _LOW) * templates  # (K, C, size, size), pixel units
    noise_seed = seed * 1_000_003 + (1 if split == "train" else 2)
    noise = torch.randn(num_images, channels, size, size, generator=torch.Generator().manual_seed(noise_seed))
    labels = torch.arange(num_images) % num_classes
    images = (templates[labels] + _NOISE * noise).round().clamp(0, 255).to(torch.uint8)
    per_channel = templates.transpose(0, 1).reshape(channels, -1)
    std = (per_channel.var(dim=1, unbiased=False) + _NOISE**2).sqrt()
    return ImageDataset(
        name="synthetic",
        images=images,
        labels=labels,
        classes=tuple(f"class{k}" for k in range(num_classes)),
        mean=tuple((per_channel.mean(dim=1) / 255).tolist()),
        std=tuple((std / 255).tolist()),
        augment=Augment(),
    )
