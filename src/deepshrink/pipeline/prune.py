"""The prune job: load a model file, prune it (optionally fine-tuning on a schedule), save it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from deepshrink.data import ImageDataset
from deepshrink.errors import UserError
from deepshrink.models import save_model
from deepshrink.pipeline.datasets import open_for_finetune
from deepshrink.pipeline.evaluate import accuracy_on
from deepshrink.pipeline.train import with_early_exit_loss
from deepshrink.prune import attach_full_masks, mask_method, masks_of, prunable_layers, prune_layers
from deepshrink.prune.criteria import CRITERIA, SCOPES
from deepshrink.prune.schedules import SCHEDULES, PruneSchedule, schedule_amounts
from deepshrink.train import Trainer, TrainConfig, TrainHook
from deepshrink.train.distributed import current


@dataclass(frozen=True)
class PruneSettings:
    """What to prune and how. ``amount``: the target sparsity in [0, 1) (magnitude, random) or
    the std factor s >= 0 (std: prune |w| < s * std(w)). ``prune_epochs``: epochs over which
    linear/agp ramp up (default: half of the training epochs, at least 1).
    ``max_layer_sparsity``: with the global magnitude criterion, no layer loses more than this
    fraction of its weights (1: no cap)."""

    amount: float
    criterion: str = "magnitude"
    scope: str = "layer"
    schedule: str = "oneshot"
    prune_epochs: int | None = None
    exclude: tuple[str, ...] = ()
    exclude_first_last: bool = True
    seed: int = 0
    max_layer_sparsity: float = 1.0

    def check(self, epochs: int) -> None:
        """A :class:`UserError` for any value out of range (given the training epochs)."""
        for value, options, what in ((self.criterion, CRITERIA, "criterion"), (self.scope, SCOPES, "scope"),
                                     (self.schedule, SCHEDULES, "schedule")):
            if value not in options:
                raise UserError(f"unknown {what} {value!r}; choose one of: {', '.join(options)}")
        if self.criterion == "std":
            if not self.amount >= 0:
                raise UserError(f"std factor must be >= 0, got {self.amount}")
        elif not 0.0 <= self.amount < 1.0:
            raise UserError(f"sparsity must be in [0, 1), got {self.amount}")
        self._check_cap()
        if epochs < 0:
            raise UserError(f"epochs must be >= 0, got {epochs}")
        if self.prune_epochs is not None and not 1 <= self.prune_epochs <= max(epochs, 1):
            raise UserError(f"prune epochs must be in [1, {max(epochs, 1)}], got {self.prune_epochs}")

    def _check_cap(self) -> None:
        cap = self.max_layer_sparsity
        if not 0.0 < cap <= 1.0:
            raise UserError(f"max layer sparsity must be in (0, 1], got {cap}")
        if cap < 1.0 and (self.criterion, self.scope) != ("magnitude", "global"):
            raise UserError("max layer sparsity applies to the magnitude criterion with global scope only")
        if cap < 1.0 and self.amount > cap:
            raise UserError(f"sparsity {self.amount} cannot be reached when no layer may exceed {cap}")

    def ramp_epochs(self, epochs: int) -> int:
        """Epochs over which linear/agp ramp up in a run of ``epochs`` epochs."""
        return self.prune_epochs or max(1, epochs // 2)

    def amounts(self, epochs: int) -> dict[int, float]:
        """{epoch: amount} of the schedule for a run of ``epochs`` epochs."""
        return schedule_amounts(self.schedule, self.amount, self.ramp_epochs(epochs))

    def record(self, epochs: int) -> dict[str, Any]:
        """The settings as a history entry of the model file."""
        key = "std_factor" if self.criterion == "std" else "target_sparsity"
        record = {"stage": "prune", "criterion": self.criterion, key: self.amount, "scope": self.scope,
                  "schedule": self.schedule if epochs else "oneshot", "epochs": epochs,
                  "exclude": list(self.exclude), "exclude_first_last": self.exclude_first_last}
        if self.max_layer_sparsity < 1.0:
            record["max_layer_sparsity"] = self.max_layer_sparsity
        if epochs and self.schedule != "oneshot":
            record["prune_epochs"] = self.ramp_epochs(epochs)
        return record


@dataclass(frozen=True)
class PruneResult:
    layer_sparsity: dict[str, float]  # pruned layer -> fraction of its weights pruned
    sparsity: float                   # over all pruned layers together
    test_top1: float | None           # after pruning (and fine-tuning), when a test set was given
    record: dict[str, Any]            # the history entry written to the model file


def prune_job(model_file: str | os.PathLike, out: str | os.PathLike, settings: PruneSettings,
              config: TrainConfig, *, train_set: ImageDataset | None = None,
              test_set: ImageDataset | None = None, run_dir: str | os.PathLike | None = None,
              resume: bool = False, hooks: Sequence[TrainHook] = ()) -> PruneResult:
    """Prune ``model_file`` and write the masked model to ``out``.

    With ``config.epochs == 0`` the model is pruned once to the target (no data needed);
    otherwise it is pruned on ``settings.schedule`` while training ``config.epochs`` epochs on
    ``train_set`` (checkpoints in ``run_dir`` if given), with extra ``hooks`` (e.g. distillation)
    taking part; an early-exit model fine-tunes with its joint exit loss. The masks are kept
    in the output.
    """
    settings.check(config.epochs)
    model, info = open_for_finetune(model_file, config.epochs, config.device, train_set, test_set)
    names = list(prunable_layers(model, settings.exclude, exclude_first_last=settings.exclude_first_last))
    if not names:
        raise UserError(f"{model_file}: no Conv2d/Linear layer left to prune after the exclusions")
    method = mask_method(settings.criterion, settings.scope, settings.seed, settings.max_layer_sparsity)
    torch.manual_seed(config.seed)
    if config.epochs == 0:
        prune_layers(model, names, method, settings.amount)
        test_top1 = accuracy_on(model, info, test_set, config.device, config.eval_batch_size) if test_set else None
    else:
        attach_full_masks(model, names)
        hook = PruneSchedule(names, method, settings.amounts(config.epochs), recover=settings.schedule == "linear")
        trainer = Trainer(model, train_set, test_set, config, out_dir=run_dir, info=info,
                          hooks=with_early_exit_loss(model, [hook, *hooks]))
        final = trainer.fit(resume=resume).final
        model, info = trainer.model, trainer.info
        test_top1 = final.top1 if final is not None else None
    masks = masks_of(model)
    layers = {name: 1.0 - float(masks[name].sum()) / masks[name].numel() for name in names}
    pruned = sum(masks[name].numel() - float(masks[name].sum()) for name in names)
    record = {**settings.record(config.epochs), "layers": layers,
              "sparsity": pruned / sum(masks[name].numel() for name in names)}
    if test_top1 is not None:
        record["test_top1"] = test_top1
    info.history.append(record)
    if current().is_main:  # under torchrun only rank 0 writes
        save_model(out, model, info)
    return PruneResult(layers, record["sparsity"], test_top1, record)
