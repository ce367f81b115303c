"""Pruning schedules as training hooks: which amount to prune to before which epoch.

An *amount* is what the criterion takes: a sparsity (magnitude, random) or a std factor (std).
Schedules are dicts ``{epoch (0-based): amount}``; pruning happens before that epoch's first
step. The masked layers should carry masks (:func:`attach_full_masks`) before the Trainer is
built, so that a checkpoint of the run can be resumed.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import nn

from deepshrink.prune.apply import prune_layers
from deepshrink.prune.criteria import MaskMethod
from deepshrink.prune.mask import weight_mask
from deepshrink.prune.select import PRUNABLE
from deepshrink.train import TrainHook

SCHEDULES = ("oneshot", "linear", "agp")


def oneshot_amounts(amount: float) -> dict[int, float]:
    """Prune once, before the first epoch; the rest is fine-tuning."""
    return {0: amount}


def linear_amounts(target: float, prune_epochs: int) -> dict[int, float]:
    """Before epoch e = 1..E (1-based) prune to target * e / E."""
    return {e - 1: target * e / prune_epochs for e in range(1, prune_epochs + 1)}


def agp_amounts(target: float, prune_epochs: int, initial: float = 0.0) -> dict[int, float]:
    """Zhu & Gupta 2017: before epoch e = 1..E, s_e = s_f + (s_i - s_f) * (1 - e / E)^3."""
    return {e - 1: target + (initial - target) * (1 - e / prune_epochs) ** 3
            for e in range(1, prune_epochs + 1)}


def cycle_amounts(amounts: Sequence[float], epochs_per_cycle: int) -> dict[int, float]:
    """Han et al. 2015 prune-retrain cycles: amount c before epoch c * epochs_per_cycle."""
    return {c * epochs_per_cycle: amount for c, amount in enumerate(amounts)}


def schedule_amounts(schedule: str, amount: float, prune_epochs: int) -> dict[int, float]:
    """The amounts of schedule ``schedule`` (one of :data:`SCHEDULES`) ending at ``amount``."""
    if schedule == "oneshot":
        return oneshot_amounts(amount)
    if schedule == "linear":
        return linear_amounts(amount, prune_epochs)
    if schedule == "agp":
        return agp_amounts(amount, prune_epochs)
    raise ValueError(f"unknown schedule {schedule!r}")


class PruneSchedule(TrainHook):
    """Prunes layers ``names`` with ``method`` to ``amounts[epoch]`` before those epochs.

    Without ``recover`` each step scores the effective weights, so pruned weights stay pruned.
    With ``recover`` every step but the last scores the weights behind the masks, which keep
    their values, so a weight pruned earlier comes back if it outgrows others; the last step
    fixes the masks. While masks are fixed the weights behind them are kept at 0.0.
    """

    def __init__(self, names: Sequence[str], method: MaskMethod, amounts: dict[int, float], *,
                 recover: bool = False):
        self.names = list(names)
        self.method = method
        self.amounts = dict(sorted(amounts.items()))
        self.recover = recover
        self.last_epoch = max(self.amounts, default=-1)
        self.layer_sparsity: dict[str, float] = {}
        self._fixed = not recover
        self._pairs: list[tuple[torch.Tensor, torch.Tensor]] = []

    def on_fit_start(self, trainer) -> None:
        self._fixed = not self.recover or trainer.epoch > self.last_epoch
        self._pairs = _masked_pairs(trainer.model, self.names)

    def on_epoch_start(self, trainer, epoch: int) -> None:
        if epoch not in self.amounts:
            return
        final = epoch == self.last_epoch
        self.layer_sparsity = prune_layers(
            trainer.model, self.names, self.method, self.amounts[epoch],
            from_underlying=self.recover, zero_pruned=final or not self.recover)
        self._fixed = final or not self.recover
        self._pairs = _masked_pairs(trainer.model, self.names)

    @torch.no_grad()
    def after_step(self, trainer) -> None:
        if self._fixed:
            for weight, mask in self._pairs:
                weight.mul_(mask)

    def on_epoch_end(self, trainer, epoch: int, metrics: dict[str, Any]) -> None:
        masks = [mask for _, mask in self._pairs]
        if masks:
            pruned = sum(int((m == 0).sum()) for m in masks)
            metrics["sparsity"] = pruned / sum(m.numel() for m in masks)

    def state_dict(self) -> dict[str, Any]:
        return {"layer_sparsity": dict(self.layer_sparsity)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.layer_sparsity = dict(state.get("layer_sparsity", {}))


class HanCycles(PruneSchedule):
    """Han et al. 2015 prune-retrain cycles; after each pruning step the dropout following a
    Linear layer is set to D_r = D_o * sqrt(C_ir / C_io), C = non-zero weights of that layer
    (io: at the start, ir: now), D_o: its rate at the start."""

    def __init__(self, names: Sequence[str], method: MaskMethod, amounts: Sequence[float],
                 epochs_per_cycle: int):
        super().__init__(names, method, cycle_amounts(amounts, epochs_per_cycle))
        self.initial: dict[str, tuple[float, int]] = {}  # Linear name -> (D_o, C_io)

    def on_fit_start(self, trainer) -> None:
        super().on_fit_start(trainer)
        for name, (linear, dropout) in linear_dropout_pairs(trainer.model).items():
            self.initial.setdefault(name, (dropout.p, int((linear.weight != 0).sum())))

    def on_epoch_start(self, trainer, epoch: int) -> None:
        super().on_epoch_start(trainer, epoch)
        for name, (linear, dropout) in linear_dropout_pairs(trainer.model).items():
            rate, connections = self.initial[name]
            dropout.p = rate * math.sqrt(int((linear.weight != 0).sum()) / connections)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "initial": {k: list(v) for k, v in self.initial.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.initial = {k: (float(v[0]), int(v[1])) for k, v in state.get("initial", {}).items()}


def linear_dropout_pairs(model: nn.Module) -> dict[str, tuple[nn.Linear, nn.Dropout]]:
    """Linear layers directly followed (in module order, among leaf modules) by a Dropout."""
    leaves = [(name, m) for name, m in model.named_modules()
              if not list(m.children()) or isinstance(m, PRUNABLE)]
    leaves = [(n, m) for n, m in leaves if "parametrizations" not in n.split(".")]
    return {name: (m, following) for (name, m), (_, following) in zip(leaves, leaves[1:])
            if isinstance(m, nn.Linear) and isinstance(following, nn.Dropout)}


def _masked_pairs(model: nn.Module, names: Sequence[str]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    pairs = []
    for name in names:
        module = model.get_submodule(name)
        found = weight_mask(module)
        if found is not None:
            pairs.append((module.parametrizations.weight.original, found.mask))
    return pairs
