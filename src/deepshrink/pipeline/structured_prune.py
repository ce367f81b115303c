"""The structured prune job: load a model file, remove channels, optionally fine-tune, save.

The output model file holds the smaller dense model; its architecture spec carries the
resized layers as overrides, so it reloads through ``load_model`` alone. Its history gains
``{"stage": "structured-prune", criterion/ratio settings, "macs_before", "macs_after",
"params_before", "params_after", "channels": {group: [before, after]}, "skipped": {...}}``,
followed by the ``train`` stage of the fine-tuning, if any (a gradual schedule, which prunes
during the fine-tuning, writes the ``train`` stage first).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from deepshrink.data import ImageDataset
from deepshrink.errors import UserError
from deepshrink.models import ModelInfo, save_model
from deepshrink.models.early_exit import EarlyExitModel
from deepshrink.pipeline.datasets import open_for_finetune
from deepshrink.pipeline.evaluate import accuracy_on
from deepshrink.prune.structured import GradualChannelPruning, StructuredSettings, prune_channels, pruned_spec
from deepshrink.train import Trainer, TrainConfig, TrainHook
from deepshrink.train.distributed import current

__all__ = ["StructuredPruneResult", "structured_prune_job"]


@dataclass(frozen=True)
class StructuredPruneResult:
    test_top1_before: float | None  # of the dense model, when a test set was given
    test_top1: float | None         # after pruning (and fine-tuning)
    record: dict[str, Any]          # the history entry written to the model file


def structured_prune_job(model_file: str | os.PathLike, out: str | os.PathLike, settings: StructuredSettings,
                         config: TrainConfig, *, train_set: ImageDataset | None = None,
                         test_set: ImageDataset | None = None, run_dir: str | os.PathLike | None = None,
                         resume: bool = False, hooks: Sequence[TrainHook] = ()) -> StructuredPruneResult:
    """Prune ``model_file`` structurally and write the smaller model to ``out``.

    ``config.epochs`` epochs of fine-tuning on ``train_set`` follow (0: none, no data needed);
    checkpoints go to ``run_dir`` if given (pruning is deterministic, so ``resume`` continues
    the fine-tuning of an interrupted run); extra ``hooks`` (e.g. distillation) take part in it.
    A gradual ``settings.schedule`` prunes during the fine-tuning and removes the channels after
    it; the test accuracy is then measured on the physically pruned model.
    """
    settings.check(config.epochs)
    model, info = open_for_finetune(model_file, config.epochs, config.device, train_set, test_set)
    if isinstance(model, EarlyExitModel):  # the channel graph does not see the heads behind forward hooks
        raise UserError(f"{model_file} has early exits, which structured pruning cannot resize; "
                        "prune the model before adding exits")
    top1_before = accuracy_on(model, info, test_set, config.device, config.eval_batch_size) if test_set else None
    model.cpu()
    shape = tuple(info.input.shape)
    if settings.schedule == "oneshot":
        result = prune_channels(model, shape, settings)
        record = {"stage": "structured-prune", **settings.record(), **result.record()}
        info = _resized(info, model, result, record)
        top1 = None
        if config.epochs > 0:
            torch.manual_seed(config.seed)
            trainer = Trainer(model, train_set, test_set, config, out_dir=run_dir, info=info, hooks=hooks)
            final = trainer.fit(resume=resume).final
            model, info = trainer.model, trainer.info
            top1 = final.top1 if final is not None else None
    else:  # prune while fine-tuning, remove after it
        torch.manual_seed(config.seed)
        gradual = GradualChannelPruning(model, shape, settings, config.epochs)
        trainer = Trainer(model, train_set, test_set, config, out_dir=run_dir, info=info, hooks=[gradual, *hooks])
        trainer.fit(resume=resume)
        model = trainer.model.cpu()
        result = prune_channels(model, shape, settings, plan=gradual.plan)
        record = {"stage": "structured-prune", **settings.record(), "epochs": config.epochs,
                  "prune_epochs": settings.ramp_epochs(config.epochs), **result.record()}
        info = _resized(trainer.info, model, result, record)
        top1 = None
    if top1 is None and test_set is not None:
        top1 = accuracy_on(model, info, test_set, config.device, config.eval_batch_size)
    if top1_before is not None:
        record["test_top1_before"] = top1_before
    if top1 is not None:
        record["test_top1"] = top1
    if current().is_main:  # under torchrun only rank 0 writes
        save_model(out, model.cpu(), info)
    return StructuredPruneResult(top1_before, top1, record)


def _resized(info: ModelInfo, model, result, record: dict[str, Any]) -> ModelInfo:
    """``info`` for the resized ``model``: its spec rebuilds the smaller layers; ``record`` joins the history."""
    return ModelInfo(pruned_spec(info.arch, model, result.resized), info.input, info.classes,
                     info.dataset, [*info.history, record])
