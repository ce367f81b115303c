"""The eval job: a model file on the test split of a dataset."""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from deepshrink.data import BatchLoader, ImageDataset
from deepshrink.models import ModelInfo
from deepshrink.pipeline.datasets import check_fits
from deepshrink.pipeline.open import is_onnx, open_model, weight_counts
from deepshrink.train import evaluate, resolve_device


def evaluate_model_file(path: str | os.PathLike, dataset: ImageDataset, *, batch_size: int = 500,
                        device: str = "auto") -> dict[str, Any]:
    """Top-1 (fraction), mean loss, parameter counts and example count, as plain data.

    ``path`` is a model file or an exported ``.onnx`` file (run by ONNX Runtime on the CPU).

    Inputs are normalised with the statistics recorded in the model file, which are those
    the model was trained with (not necessarily the dataset's).
    """
    model, info = open_model(path)
    check_fits(info, dataset)
    target = torch.device("cpu") if is_onnx(path) else resolve_device(device)
    model.to(target)
    loader = BatchLoader(dataset, batch_size, mean=info.input.mean, std=info.input.std, device=target)
    result = evaluate(model, loader, target)
    params, nonzero = weight_counts(model, path)
    return {"model": info.arch.name, "dataset": dataset.name, "top1": result.top1,
            "loss": result.loss, "correct": result.correct, "examples": result.examples,
            "params": params, "nonzero_params": nonzero}


def accuracy_on(model: nn.Module, info: ModelInfo, dataset: ImageDataset, device: str = "auto",
                  batch_size: int = 500) -> float:
    """Top-1 (fraction) of an in-memory ``model`` on ``dataset``, normalised as ``info`` says.

    Parametrizations (masks, quantizers) are evaluated once for the whole pass, not per batch.
    """
    target = resolve_device(device)
    loader = BatchLoader(dataset, batch_size, mean=info.input.mean, std=info.input.std, device=target)
    with parametrize.cached():
        return evaluate(model.to(target), loader, target).top1
