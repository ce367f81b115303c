"""The in-memory image dataset every reader returns, and its default training augmentation."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from deepshrink.errors import UserError

SPLITS = ("train", "test")


def check_split(name: str, split: str) -> None:
    """Raise :class:`UserError` unless ``split`` is "train" or "test"."""
    if split not in SPLITS:
        raise UserError(f"{name}: unknown split {split!r}: expected 'train' or 'test'")


@dataclass(frozen=True)
class Augment:
    """Default training augmentation of a dataset.

    ``crop_padding``: random crop back to (H, W) after zero-padding this many pixels on each side
    (0 = no crop). ``hflip``: flip each image horizontally with probability 0.5.
    """

    crop_padding: int = 0
    hflip: bool = False

    def __post_init__(self) -> None:
        padding = self.crop_padding
        if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
            raise UserError(f"augment: crop_padding must be an integer >= 0, got {self.crop_padding!r}")


@dataclass(frozen=True, eq=False)
class ImageDataset:
    """A labelled image set kept in memory.

    ``images``: uint8 (N, C, H, W), contiguous, pixel values 0..255. ``labels``: int64 (N,) in
    ``[0, num_classes)``. ``mean``/``std``: per channel, of pixels scaled to [0, 1] (the
    normalisation a model trained on this data expects). ``augment``: default training augmentation.
    """

    name: str
    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: Augment = Augment()

    def __post_init__(self) -> None:
        images, labels = self.images, self.labels
        if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.dim() != 4:
            raise UserError(f"{self.name}: images must be a uint8 tensor of shape (N, C, H, W)")
        if not isinstance(labels, torch.Tensor) or labels.dtype != torch.int64 or labels.shape != images.shape[:1]:
            raise UserError(f"{self.name}: labels must be an int64 tensor of shape ({images.shape[0]},)")
        classes, mean, std = tuple(self.classes), tuple(map(float, self.mean)), tuple(map(float, self.std))
        if not classes:
            raise UserError(f"{self.name}: a dataset needs at least one class")
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= len(classes)):
            found = f"{int(labels.min())}..{int(labels.max())}"
            raise UserError(f"{self.name}: labels must lie in [0, {len(classes)}), got {found}")
        channels = images.shape[1]
        if len(mean) != channels or len(std) != channels or min(std) <= 0:
            raise UserError(f"{self.name}: mean and std need {channels} values each, std > 0")
        object.__setattr__(self, "images", images.contiguous())
        for key, value in (("classes", classes), ("mean", mean), ("std", std)):
            object.__setattr__(self, key, value)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        return tuple(self.images.shape[1:])

    def __len__(self) -> int:
        return self.images.shape[0]

    def subset(self, indices: int | torch.Tensor) -> ImageDataset:
        """The first ``indices`` images (an int), or those at the given index tensor, in that order."""
        if isinstance(indices, int):
            if not 0 <= indices <= len(self):
                raise UserError(f"{self.name}: cannot take the first {indices} of {len(self)} images")
            return dataclasses.replace(self, images=self.images[:indices], labels=self.labels[:indices])
        indices = torch.as_tensor(indices, dtype=torch.int64).reshape(-1)
        if indices.numel() and not (0 <= int(indices.min()) and int(indices.max()) < len(self)):
            raise UserError(f"{self.name}: subset indices must lie in [0, {len(self)})")
        return dataclasses.replace(self, images=self.images[indices], labels=self.labels[indices])
