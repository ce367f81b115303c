"""The eval job: a model file on the test split of a dataset."""

from __future__ import annotations

import os
from typing import Any

from deepshrink.analysis import count_params
from deepshrink.data import BatchLoader, ImageDataset
from deepshrink.models import load_model
from deepshrink.pipeline.datasets import check_fits
from deepshrink.train import evaluate, resolve_device


def evaluate_model_file(path: str | os.PathLike, dataset: ImageDataset, *, batch_size: int = 500,
                        device: str = "auto") -> dict[str, Any]:
    """Top-1 (fraction), mean loss, parameter counts and example count, as plain data.

    Inputs are normalised with the statistics recorded in the model file, which are those
    the model was trained with (not necessarily the dataset's).
    """
    model, info = load_model(path)
    check_fits(info, dataset)
    target = resolve_device(device)
    model.to(target)
    loader = BatchLoader(dataset, batch_size, mean=info.input.mean, std=info.input.std, device=target)
    result = evaluate(model, loader, target)
    params = count_params(model)
    return {"model": info.arch.name, "dataset": dataset.name, "top1": result.top1,
            "loss": result.loss, "correct": result.correct, "examples": result.examples,
            "params": params.total, "nonzero_params": params.nonzero}
