"""Loading a train/test pair and checking it against a model."""

from __future__ import annotations

import os

from deepshrink.data import ImageDataset, load_dataset
from deepshrink.errors import UserError
from deepshrink.models.file import ModelInfo


def load_split(name: str, split: str, data_dir: str | os.PathLike | None = None,
               limit: int | None = None) -> ImageDataset:
    """One split of dataset ``name``, optionally only its first ``limit`` images."""
    dataset = load_dataset(name, split, data_dir)
    if limit is not None:
        if limit < 1:
            raise UserError(f"limit must be >= 1, got {limit}")
        dataset = dataset.subset(min(limit, len(dataset)))
    return dataset


def check_fits(info: ModelInfo, dataset: ImageDataset) -> None:
    """A :class:`UserError` when the model's input shape or class count differ from the data's."""
    if tuple(info.input.shape) != tuple(dataset.image_shape):
        shape = "x".join(map(str, info.input.shape))
        raise UserError(f"the model expects {shape} images but {dataset.name} has "
                        f"{'x'.join(map(str, dataset.image_shape))}")
    classes = info.arch.kwargs.get("num_classes")
    if classes is not None and classes != dataset.num_classes:
        raise UserError(f"the model has {classes} classes but {dataset.name} has {dataset.num_classes}")
