"""The one skeleton of the compressing jobs (prune, structured prune, quantize):

    load the model file -> apply the verb -> fine-tune (optional) -> evaluate -> save

Each job supplies a :class:`Compression`: what to do before fine-tuning (the one-shot verb),
which training hooks act during it (a pruning schedule), and what to do after it (remove
zeroed channels, count the sparsity), returning the history record of the model file. The
skeleton does the rest the same way for all: data checks and torchrun set-up, the early-exit
loss, the fine-tuning with checkpoints, the test accuracy, the history entry, writing the
file on rank 0 only, and the :class:`Measures` of the model before and after (accuracy, MACs,
parameters, bytes on disk) for the commands' before/after tables.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import torch
from torch import nn

from deepshrink.analysis import count_params
from deepshrink.analysis.costs import model_costs
from deepshrink.data import ImageDataset
from deepshrink.files import check_output
from deepshrink.models import ModelInfo, save_model
from deepshrink.pipeline.datasets import open_for_finetune
from deepshrink.pipeline.evaluate import accuracy_on
from deepshrink.pipeline.train import with_early_exit_loss
from deepshrink.progress import step
from deepshrink.train import Trainer, TrainConfig, TrainHook
from deepshrink.train.distributed import current

__all__ = ["Compression", "CompressionOutcome", "FinetuneData", "Measures", "changes", "measure", "run_compression"]


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
class Measures:
    """What a model (file) is worth: test top-1 (None without a test set, or not measured), MACs
    and MACs with a non-zero weight per input (None when the file records no input shape),
    parameters, and the file's bytes on disk (None when not written by this process)."""

    top1: float | None
    macs: int | None
    sparse_macs: int | None
    params: int
    bytes: int | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CompressionOutcome:
    model: nn.Module
    info: ModelInfo
    record: dict[str, Any]
    test_top1_before: float | None  # of the loaded model, when asked for and a test set was given
    test_top1: float | None         # of the saved model, when a test set was given
    before: Measures | None = None  # the loaded model and its file
    after: Measures | None = None   # the saved model and its file


def changes(before: Measures, after: Measures) -> dict[str, float | None]:
    """After against before: top-1 difference in points (after - before), and how many times
    fewer MACs (also those with a non-zero weight) and parameters, and how many times fewer
    bytes on disk (None where either side is unknown)."""
    def times(a, b):
        return a / b if a is not None and b else None

    return {"top1_points": 100 * (after.top1 - before.top1) if None not in (before.top1, after.top1) else None,
            "macs_times_fewer": times(before.macs, after.macs),
            "sparse_macs_times_fewer": times(before.sparse_macs, after.sparse_macs),
            "params_times_fewer": times(before.params, after.params),
            "bytes_times_smaller": times(before.bytes, after.bytes)}


def measure(model: nn.Module, info: ModelInfo, path: str | os.PathLike | None, top1: float | None) -> Measures:
    """:class:`Measures` of ``model`` (described by ``info``) stored at ``path`` (None: not on disk)."""
    macs = sparse = None
    if info.input is not None:
        totals = model_costs(model, tuple(info.input.shape)).totals
        macs, sparse = totals["macs"], totals["sparse_macs"]
    size = os.path.getsize(path) if path is not None and os.path.isfile(path) else None
    return Measures(top1, macs, sparse, count_params(model).total, size)


def run_compression(model_file: str | os.PathLike, out: str | os.PathLike, compression: Compression,
                    config: TrainConfig, data: FinetuneData, *, measure_before: bool = False) -> CompressionOutcome:
    """Load ``model_file``, compress it, fine-tune ``config.epochs`` epochs (0: none, no
    training data needed), evaluate on ``data.test_set`` and write the model to ``out``
    (under torchrun, rank 0 writes). ``measure_before``: also the accuracy of the loaded model."""
    check_output(out, [model_file])  # before the work: not the input, not a directory or device
    model, info = open_for_finetune(model_file, config.epochs, config.device, data.train_set, data.test_set)
    test_set = data.test_set
    before = None
    if measure_before and test_set is not None:
        with step("test top-1 of the input model"):
            before = accuracy_on(model, info, test_set, config.device, config.eval_batch_size)
    start = measure(model, info, model_file, before)
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
        with step("test top-1 of the output model"):
            top1 = accuracy_on(model, info, test_set, config.device, config.eval_batch_size)
    if before is not None:
        record["test_top1_before"] = before
    if top1 is not None:
        record["test_top1"] = top1
    if not any(entry is record for entry in info.history):
        info.history.append(record)
    if current().is_main:
        save_model(out, model.cpu(), info)
    end = measure(model, info, out if current().is_main else None, top1)
    return CompressionOutcome(model, info, record, before, top1, start, end)
