"""Loading a train/test pair and checking it against a model."""

from __future__ import annotations

import os

from torch import nn

from deepshrink.data import FolderSource, ImageDataset, is_folder_name, load_dataset
from deepshrink.errors import ConfigError, UserError
from deepshrink.models.file import ModelInfo, load_model


def load_split(name: str | FolderSource, split: str, data_dir: str | os.PathLike | None = None,
               limit: int | None = None) -> ImageDataset:
    """One split of dataset ``name`` (a name, ``folder:DIR`` or a :class:`FolderSource`),
    optionally only its first ``limit`` images."""
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
        if is_folder_name(dataset.name) and tuple(info.input.shape[:1]) == (3,):
            raise ConfigError("FolderSource", "image_size", f"is {dataset.image_shape[1]} but the model expects "
                                                            f"{shape} images")
        raise UserError(f"the model expects {shape} images but {dataset.name} has "
                        f"{'x'.join(map(str, dataset.image_shape))}")
    classes = info.arch.kwargs.get("num_classes")
    if classes is not None and classes != dataset.num_classes:
        raise UserError(f"the model has {classes} classes but {dataset.name} has {dataset.num_classes}")


def open_for_finetune(model_file: str | os.PathLike, epochs: int, device: str,
                      train_set: ImageDataset | None, test_set: ImageDataset | None) -> tuple[nn.Module, ModelInfo]:
    """Load ``model_file`` for a compressing job that fine-tunes ``epochs`` epochs (0: none):
    check the data is there and fits the model, and join the process group under torchrun."""
    from deepshrink.train.distributed import init_from_env

    if epochs and train_set is None:
        raise UserError("fine-tuning (epochs > 0) needs training data")
    init_from_env(device)
    model, info = load_model(model_file)
    for dataset in (train_set, test_set):
        if dataset is not None:
            check_fits(info, dataset)
    return model, info
