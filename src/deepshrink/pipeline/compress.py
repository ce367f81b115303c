"""The one skeleton of the compressing jobs (prune, structured prune, quantize):

    load the model file -> apply the verb -> fine-tune (optional) -> evaluate -> save

Each job supplies a :class:`Compression`: what to do before fine-tuning (the one-shot verb),
which training hooks act during it (a pruning schedule), and what to do after it (remove
zeroed channels, count the sparsity), returning the history record of the model file. The
skeleton does the rest the same way for all: data checks and torchrun set-up, the early-exit
loss, the fine-tuning with checkpoints, the test accuracy, the history entry, and writing the
file on rank 0 only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch import nn

from deepshrink.data import ImageDataset
from deepshrink.files import check_output
from deepshrink.models import ModelInfo, save_model
from deepshrink.pipeline.datasets import open_for_finetune
from deepshrink.pipeline.evaluate import accuracy_on
from deepshrink.pipeline.train import with_early_exit_loss
from deepshrink.train import Trainer, TrainConfig, TrainHook
from deepshrink.train.distributed import current

__all__ = ["Compression", "CompressionOutcome", "FinetuneData", "run_compression"]


@dataclass(frozen=True)
class FinetuneData:
    """Where a compressing job fine-tunes and evaluates: the data, checkpoints, extra hooks."""

    train_set: ImageDataset | None = None
    test_set: ImageDataset | None = None
    run_dir: str | os.PathLike | None = None
    resume: bool = False
    hooks: Sequence[TrainHook] = field(default_factory=tuple)


class Compression:
    """One job's part of the skeleton; the defaults do nothing. ``changes_after_training``:
    :meth:`finish` changes the model's outputs, so the accuracy is measured after it, not taken
    from the last epoch of fine-tuning."""

    changes_after_training = False
    reseed_before_training = False  # training starts from ``config.seed`` again after apply()

    def apply(self, model: nn.Module, info: ModelInfo) -> tuple[nn.Module, ModelInfo]:
        """Before fine-tuning: compress ``model`` (in place, or return a new one) and its info."""
        return model, info

    def training_hooks(self, model: nn.Module, epochs: int) -> list[TrainHook]:
        """Hooks that act during ``epochs`` epochs of fine-tuning (a pruning schedule)."""
        return []

    def finish(self, model: nn.Module, info: ModelInfo) -> tuple[nn.Module, ModelInfo, dict[str, Any]]:
        """After fine-tuning (or right after :meth:`apply` without it): the final model, its
        info and the record for the model file's history (appended unless already there)."""
        raise NotImplementedError


@dataclass(frozen=True)
class CompressionOutcome:
    model: nn.Module
    info: ModelInfo
    record: dict[str, Any]
    test_top1_before: float | None  # of the loaded model, when asked for and a test set was given
    test_top1: float | None         # of the saved model, when a test set was given


def run_compression(model_file: str | os.PathLike, out: str | os.PathLike, compression: Compression,
                    config: TrainConfig, data: FinetuneData, *, measure_before: bool = False) -> CompressionOutcome:
    """Load ``model_file``, compress it, fine-tune ``config.epochs`` epochs (0: none, no
    training data needed), evaluate on ``data.test_set`` and write the model to ``out``
    (under torchrun, rank 0 writes). ``measure_before``: also the accuracy of the loaded model."""
    check_output(out, [model_file])  # before the work: not the input, not a directory or device
    model, info = open_for_finetune(model_file, config.epochs, config.device, data.train_set, data.test_set)
    test_set = data.test_set
    before = accuracy_on(model, info, test_set, config.device, config.eval_batch_size) \
        if measure_before and test_set is not None else None
    torch.manual_seed(config.seed)
    model, info = compression.apply(model, info)
    top1 = None
    if config.epochs:
        if compression.reseed_before_training:
            torch.manual_seed(config.seed)
        hooks = with_early_exit_loss(model, [*compression.training_hooks(model, config.epochs), *data.hooks])
        trainer = Trainer(model, data.train_set, test_set, config, out_dir=data.run_dir, info=info, hooks=hooks)
        final = trainer.fit(resume=data.resume).final
        model, info = trainer.model, trainer.info
        top1 = final.top1 if final is not None and not compression.changes_after_training else None
    model, info, record = compression.finish(model, info)
    if top1 is None and test_set is not None:
        top1 = accuracy_on(model, info, test_set, config.device, config.eval_batch_size)
    if before is not None:
        record["test_top1_before"] = before
    if top1 is not None:
        record["test_top1"] = top1
    if not any(entry is record for entry in info.history):
        info.history.append(record)
    if current().is_main:
        save_model(out, model.cpu(), info)
    return CompressionOutcome(model, info, record, before, top1)
