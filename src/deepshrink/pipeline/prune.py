"""The prune job: load a model file, prune it (optionally fine-tuning on a schedule), save it."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any, Sequence

from torch import nn

from deepshrink.data import ImageDataset
from deepshrink.models import ModelInfo
from deepshrink.pipeline.compress import Compression, FinetuneData, Measures, run_compression
from deepshrink.prune.api import prune_, pruned_layers, pruning_hook, selected_layers
from deepshrink.prune.config import PruneConfig
from deepshrink.prune.mask import masks_of
from deepshrink.train import TrainConfig, TrainHook

__all__ = ["PruneResult", "prune_job"]


@dataclass(frozen=True)
class PruneResult:
    layer_sparsity: dict[str, float]  # pruned layer -> fraction of its weights pruned
    sparsity: float                   # over all pruned layers together
    test_top1: float | None           # after pruning (and fine-tuning), when a test set was given
    record: dict[str, Any]            # the history entry written to the model file
    before: Measures | None = None    # the input model and file (top-1 with ``measure_before``)
    after: Measures | None = None     # the output model and file


class _FineGrained(Compression):
    """One-shot masks before fine-tuning, or masks on ``config.schedule`` during it."""

    def __init__(self, config: PruneConfig, epochs: int):
        config.check_epochs(epochs)
        self.config, self.epochs, self.names = config, epochs, []

    def apply(self, model: nn.Module, info: ModelInfo) -> tuple[nn.Module, ModelInfo]:
        self.names = selected_layers(model, self.config)
        if not self.epochs:
            prune_(model, self.config if self.config.schedule == "oneshot" else _oneshot(self.config))
        return model, info

    def training_hooks(self, model: nn.Module, epochs: int) -> list[TrainHook]:
        return [pruning_hook(model, self.config, epochs)]

    def finish(self, model: nn.Module, info: ModelInfo):
        layers = pruned_layers(model, self.names)
        masks = masks_of(model)
        pruned = sum(masks[name].numel() - float(masks[name].sum()) for name in self.names)
        record = {**self.config.record(self.epochs), "layers": layers,
                  "sparsity": pruned / sum(masks[name].numel() for name in self.names)}
        return model, info, record


def _oneshot(config: PruneConfig) -> PruneConfig:
    """``config`` pruning at once (a schedule without training epochs prunes to the target)."""
    return replace(config, schedule="oneshot", prune_epochs=None)


def prune_job(model_file: str | os.PathLike, out: str | os.PathLike, settings: PruneConfig,
              config: TrainConfig, *, train_set: ImageDataset | None = None,
              test_set: ImageDataset | None = None, run_dir: str | os.PathLike | None = None,
              resume: bool = False, hooks: Sequence[TrainHook] = (), measure_before: bool = False) -> PruneResult:
    """Prune ``model_file`` and write the masked model to ``out``.

    With ``config.epochs == 0`` the model is pruned once to the target (no data needed);
    otherwise it is pruned on ``settings.schedule`` while training ``config.epochs`` epochs on
    ``train_set`` (checkpoints in ``run_dir`` if given), with extra ``hooks`` (e.g. distillation)
    taking part; an early-exit model fine-tunes with its joint exit loss. The masks are kept
    in the output. ``measure_before``: also the test accuracy of the input model.
    """
    data = FinetuneData(train_set, test_set, run_dir, resume, tuple(hooks))
    outcome = run_compression(model_file, out, _FineGrained(settings, config.epochs), config, data,
                              measure_before=measure_before)
    record = outcome.record
    return PruneResult(record["layers"], record["sparsity"], outcome.test_top1, record, outcome.before, outcome.after)
