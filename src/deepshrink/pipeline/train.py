"""The train job: build a zoo model for a dataset and train it with the engine."""

from __future__ import annotations

import os
from typing import Any, Sequence

import torch
from torch import nn

from deepshrink.data import ImageDataset
from deepshrink.models import InputSpec, ModelInfo, build_model, make_spec
from deepshrink.errors import UserError
from deepshrink.models.early_exit import EarlyExitModel, add_exits
from deepshrink.models.file import load_model
from deepshrink.pipeline.datasets import check_fits
from deepshrink.train import DistillationHook, Trainer, TrainConfig, TrainHook, TrainResult
from deepshrink.train.distributed import init_from_env
from deepshrink.train.early_exit import EarlyExitLoss


def new_model_info(model_name: str, dataset: ImageDataset, options: dict[str, Any] | None = None) -> ModelInfo:
    """The :class:`ModelInfo` of a fresh zoo model sized for ``dataset``."""
    channels, height, _ = dataset.image_shape
    fixed = sorted(set(options or ()) & {"num_classes", "in_channels", "image_size"})
    if fixed:
        raise UserError(f"model option {fixed[0]} is set from the dataset ({dataset.name}); leave it out")
    spec = make_spec(model_name, num_classes=dataset.num_classes, in_channels=channels,
                     image_size=height, **(options or {}))
    return ModelInfo(spec, InputSpec(dataset.image_shape, dataset.mean, dataset.std),
                     classes=list(dataset.classes), dataset=dataset.name)


def train_job(train_set: ImageDataset, test_set: ImageDataset | None, config: TrainConfig, *,
              model_name: str | None = None, model_options: dict[str, Any] | None = None,
              init_from: str | os.PathLike | None = None, out_dir: str | os.PathLike | None = None,
              resume: bool = False, hooks: Sequence[TrainHook] = (),
              early_exits: Sequence[str] | None = None,
              exit_weights: Sequence[float] | None = None) -> tuple[Trainer, TrainResult]:
    """Train a new zoo model (``model_name``) or continue from a model file (``init_from``).

    ``early_exits`` (backbone module names, in forward order) adds exit heads to the zoo model
    or to the model file's model; an early-exit model, new or loaded, trains jointly with
    :class:`~deepshrink.train.early_exit.EarlyExitLoss` (``exit_weights``: one per exit, default 1).
    The model's initial weights come from ``torch.manual_seed(config.seed)``. Under torchrun
    the process joins the process group first (see :mod:`deepshrink.train.distributed`).
    Returns the trainer (its ``model`` and ``info`` are the result) and the outcome.
    """
    if (model_name is None) == (init_from is None):
        raise ValueError("give exactly one of model_name and init_from")
    init_from_env(config.device)
    torch.manual_seed(config.seed)
    if init_from is not None:
        model, info = load_model(init_from)
        check_fits(info, train_set)
    else:
        info = new_model_info(model_name, train_set, model_options)
        model = build_model(info.arch)
    if early_exits:
        if isinstance(model, EarlyExitModel):
            raise UserError(f"{init_from} already has early exits at {', '.join(model.exit_points)}; "
                            "continue it without --early-exits")
        model, info.arch = add_exits(model, info.arch, early_exits)
    if exit_weights is not None and not isinstance(model, EarlyExitModel):
        raise UserError("exit weights need early exits (--early-exits)")
    if exit_weights is not None and len(exit_weights) != len(model.exit_points):  # before the run folder exists
        raise UserError(f"{len(exit_weights)} early-exit loss weights for {len(model.exit_points)} exits")
    hooks = with_early_exit_loss(model, hooks, exit_weights)
    trainer = Trainer(model, train_set, test_set, config, out_dir=out_dir, info=info, hooks=hooks)
    return trainer, trainer.fit(resume=resume)


def with_early_exit_loss(model: nn.Module, hooks: Sequence[TrainHook] = (),
                         exit_weights: Sequence[float] | None = None) -> list[TrainHook]:
    """``hooks``, plus the joint :class:`~deepshrink.train.early_exit.EarlyExitLoss` (weights
    ``exit_weights``, default 1 per exit) when ``model`` is an early-exit model that ``hooks``
    do not already train so: what every job that trains or fine-tunes a loaded model passes
    to its :class:`~deepshrink.train.Trainer`, so that the exit heads keep learning too."""
    hooks = list(hooks)
    if isinstance(model, EarlyExitModel) and not any(isinstance(hook, EarlyExitLoss) for hook in hooks):
        hooks.append(EarlyExitLoss(exit_weights))
    return hooks


def distillation_hook(teacher_file: str | os.PathLike, dataset: ImageDataset, *, temperature: float = 4.0,
                      alpha: float = 0.9) -> DistillationHook:
    """A :class:`DistillationHook` whose teacher is the model file ``teacher_file`` (checked against ``dataset``)."""
    teacher, info = load_model(teacher_file)
    check_fits(info, dataset)
    return DistillationHook(teacher, temperature, alpha, teacher_norm=(info.input.mean, info.input.std),
                            teacher_name=f"{info.arch.name} ({os.path.basename(teacher_file)})")
