"""Joint training of early exits: the loss of every exit added to the backbone's."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import torch
import torch.nn.functional as F

from deepshrink.errors import UserError
from deepshrink.models.early_exit import EARLY_EXIT_ARCH, EarlyExitModel
from deepshrink.train.hooks import TrainHook

if TYPE_CHECKING:
    from deepshrink.train.trainer import Trainer

__all__ = ["EarlyExitLoss"]


class EarlyExitLoss(TrainHook):
    """loss = CE(final) + Σ_i weights[i]·CE(exit i), for a trainer whose model is an
    :class:`~deepshrink.models.early_exit.EarlyExitModel` (weights default to 1 each).

    The exits use the trainer's label smoothing, like the final classifier. With an output
    folder the trainer's ``info.arch`` must be the model's ``early-exit`` spec
    (:func:`~deepshrink.models.early_exit.early_exit_spec`), so that its model files reload.
    """

    def __init__(self, weights: Sequence[float] | None = None):
        if weights is not None and any(not w >= 0 for w in weights):
            raise UserError(f"early-exit loss weights must be >= 0, got {list(weights)}")
        self.weights = None if weights is None else [float(w) for w in weights]

    def on_fit_start(self, trainer: "Trainer") -> None:
        model = trainer.model
        if not isinstance(model, EarlyExitModel):
            raise UserError("the early-exit loss needs an EarlyExitModel to train")
        if self.weights is not None and len(self.weights) != len(model.exits):
            raise UserError(f"{len(self.weights)} early-exit loss weights for {len(model.exits)} exits")
        info = getattr(trainer, "info", None)
        if trainer.out_dir is not None and (info is None or info.arch.name != EARLY_EXIT_ARCH
                                            or info.arch.kwargs.get("exit_points") != model.exit_points):
            raise UserError("the model files of an early-exit model need its early-exit spec "
                            "(deepshrink.models.early_exit.early_exit_spec) as the trainer's info.arch")

    def loss(self, trainer: "Trainer", inputs: torch.Tensor, targets: torch.Tensor,
             outputs: torch.Tensor, loss: torch.Tensor) -> torch.Tensor:
        exit_logits = trainer.model.exit_logits
        weights = self.weights or [1.0] * len(exit_logits)
        smoothing = trainer.config.label_smoothing
        for weight, logits in zip(weights, exit_logits):
            loss = loss + weight * F.cross_entropy(logits, targets, label_smoothing=smoothing)
        return loss
