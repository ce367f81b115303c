"""scikit-learn's bundled 8x8 handwritten digits (1,797 images; no download)."""

from __future__ import annotations

import numpy as np
import torch

from deepshrink.data.dataset import Augment, ImageDataset, check_split

CLASSES = tuple(str(d) for d in range(10))
# Mean and std of the train split's pixels scaled to [0, 1] (tests recompute them).
MEAN = (0.305434,)
STD = (0.375957,)


def load_digits(split: str) -> ImageDataset:
    """The digits ``split``: "train" 1,437 or "test" 360 images, uint8 (N, 1, 8, 8), labels 0..9.

    Pixels 0..16 are scaled to 0..255 (``round(v * 255 / 16)``). The split is fixed and
    stratified (``train_test_split(test_size=0.2, random_state=0)``); each split keeps the
    original image order.
    """
    from sklearn.datasets import load_digits as sklearn_digits  # here: importing sklearn costs ~1 s
    from sklearn.model_selection import train_test_split

    check_split("digits", split)
    bunch = sklearn_digits()
    train, test = train_test_split(
        np.arange(len(bunch.target)), test_size=0.2, random_state=0, stratify=bunch.target
    )
    index = np.sort(train if split == "train" else test)
    pixels = np.rint(bunch.images[index] * (255 / 16)).astype(np.uint8)
    return ImageDataset(
        name="digits",
        images=torch.from_numpy(pixels).unsqueeze(1),
        labels=torch.from_numpy(bunch.target[index].astype(np.int64)),
        classes=CLASSES,
        mean=MEAN,
        std=STD,
        augment=Augment(crop_padding=1, hflip=False),
    )
