"""Datasets as in-memory uint8 tensors, batch-wise augmentation and a seeded, DDP-aware loader.

``load_dataset(name, split, data_dir)`` returns an :class:`ImageDataset` (``name`` may be
``folder:DIR`` or a :class:`FolderSource`: your own images); :class:`BatchLoader` turns it into
normalised float32 batches.
"""

from __future__ import annotations

import os

from deepshrink.data import cifar, mnist
from deepshrink.data.augment import apply_augment, random_crop, random_hflip
from deepshrink.data.cifar import load_cifar10
from deepshrink.data.dataset import Augment, ImageDataset, check_split
from deepshrink.data.digits import load_digits
from deepshrink.data.folder import FolderSource, folder_source, is_folder_name, load_folder
from deepshrink.data.loader import BatchLoader
from deepshrink.data.mnist import load_mnist
from deepshrink.data.synthetic import make_synthetic
from deepshrink.errors import ConfigError, UserError

__all__ = [
    "DATASET_NAMES",
    "Augment",
    "BatchLoader",
    "FolderSource",
    "ImageDataset",
    "apply_augment",
    "folder_source",
    "is_folder_name",
    "load_dataset",
    "needs_data_dir",
    "random_crop",
    "random_hflip",
]

DATASET_NAMES = ("cifar10", "digits", "mnist", "synthetic")
# Datasets read from a folder, and the layout that folder must have.
_FOLDER_LAYOUTS = {"cifar10": cifar.LAYOUT, "mnist": mnist.LAYOUT}


def _check_name(name: str | FolderSource) -> None:
    if name not in DATASET_NAMES and not is_folder_name(name):
        raise UserError(f"unknown dataset {name!r}: choose one of {', '.join(DATASET_NAMES)}, or folder:DIR")


def needs_data_dir(name: str | FolderSource) -> bool:
    """Whether dataset ``name`` is read from ``data_dir`` (cifar10, mnist) rather than built in
    or named with its folder (``folder:DIR``)."""
    _check_name(name)
    return name in _FOLDER_LAYOUTS


def load_dataset(name: str | FolderSource, split: str, data_dir: str | os.PathLike | None = None) -> ImageDataset:
    """Dataset ``name`` (one of ``DATASET_NAMES``, ``folder:DIR`` or a :class:`FolderSource`),
    ``split`` "train" or "test".

    cifar10 and mnist are read from ``data_dir``; the others ignore it.
    """
    _check_name(name)
    if is_folder_name(name):
        return load_folder(folder_source(name), split)
    check_split(name, split)
    if name == "digits":
        return load_digits(split)
    if name == "synthetic":
        return make_synthetic(split)
    if data_dir is None:
        raise ConfigError("load_dataset", "data_dir", f"is needed for {name}: {_FOLDER_LAYOUTS[name]}")
    return load_cifar10(data_dir, split) if name == "cifar10" else load_mnist(data_dir, split)
