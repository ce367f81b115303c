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

from torch import nn

from deepshrink.data import ImageDataset
from deepshrink.errors import UserError
from deepshrink.models import ModelInfo
from deepshrink.models.early_exit import EarlyExitModel
from deepshrink.pipeline.compress import Compression, FinetuneData, Measures, run_compression
from deepshrink.progress import step
from deepshrink.prune.structured import GradualChannelPruning, StructuredConfig, prune_channels, pruned_spec
from deepshrink.train import TrainConfig, TrainHook

__all__ = ["StructuredPruneResult", "structured_prune_job"]


@dataclass(frozen=True)
class StructuredPruneResult:
    test_top1_before: float | None  # of the dense model, when a test set was given
    test_top1: float | None         # after pruning (and fine-tuning)
    record: dict[str, Any]          # the history entry written to the model file
    before: Measures | None = None  # the dense model and its file
    after: Measures | None = None   # the pruned model and its file


class _Channels(Compression):
    """One-shot removal before fine-tuning, or zeroing on a schedule during it and removal after."""

    def __init__(self, config: StructuredConfig, epochs: int, source: str):
        config.check_epochs(epochs)
        self.config, self.epochs, self.source = config, epochs, source
        self.gradual = config.schedule != "oneshot"
        self.changes_after_training = self.gradual  # the zeroed channels are removed after it
        self.reseed_before_training = not self.gradual  # as before the skeleton: seeded after the removal
        self.record, self.hook = None, None

    def apply(self, model: nn.Module, info: ModelInfo):
        if isinstance(model, EarlyExitModel):  # the channel graph does not see the heads behind forward hooks
            raise UserError(f"{self.source} has early exits, which structured pruning cannot resize; "
                            "prune the model before adding exits")
        self.shape = tuple(info.input.shape)
        model.cpu()
        if self.gradual:
            return model, info
        with step("choosing and removing channels"):
            result = prune_channels(model, self.shape, self.config)
        self.record = {"stage": "structured-prune", **self.config.record(), **result.record()}
        return model, _resized(info, model, result, self.record)

    def training_hooks(self, model: nn.Module, epochs: int) -> list[TrainHook]:
        if not self.gradual:
            return []
        self.hook = GradualChannelPruning(model, self.shape, self.config, epochs)
        return [self.hook]

    def finish(self, model: nn.Module, info: ModelInfo):
        if not self.gradual:
            return model, info, self.record
        model = model.cpu()
        result = prune_channels(model, self.shape, self.config, plan=self.hook.plan)
        record = {"stage": "structured-prune", **self.config.record(), "epochs": self.epochs,
                  "prune_epochs": self.config.ramp_epochs(self.epochs), **result.record()}
        return model, _resized(info, model, result, record), record


def structured_prune_job(model_file: str | os.PathLike, out: str | os.PathLike, settings: StructuredConfig,
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
    data = FinetuneData(train_set, test_set, run_dir, resume, tuple(hooks))
    outcome = run_compression(model_file, out, _Channels(settings, config.epochs, str(model_file)), config, data,
                              measure_before=True)
    return StructuredPruneResult(outcome.test_top1_before, outcome.test_top1, outcome.record, outcome.before,
                                 outcome.after)


def _resized(info: ModelInfo, model, result, record: dict[str, Any]) -> ModelInfo:
    """``info`` for the resized ``model``: its spec rebuilds the smaller layers; ``record`` joins the history."""
    return ModelInfo(pruned_spec(info.arch, model, result.resized), info.input, info.classes,
                     info.dataset, [*info.history, record])
