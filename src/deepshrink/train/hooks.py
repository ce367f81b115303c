"""Hooks: how other stages take part in each training step without copying the loop.

A pruning mask, a quantizer, a distillation loss or a regulariser subclasses
:class:`TrainHook` and overrides only what it needs. Hooks run in the order given.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from deepshrink.train.trainer import Trainer


class TrainHook:
    """No-op base class; every method is optional."""

    def on_fit_start(self, trainer: "Trainer") -> None:
        """After model, optimiser and (on resume) state are ready, before the first epoch."""

    def on_epoch_start(self, trainer: "Trainer", epoch: int) -> None:
        """Before the first batch of ``epoch`` (0-based)."""

    def loss(self, trainer: "Trainer", inputs: torch.Tensor, targets: torch.Tensor,
             outputs: torch.Tensor, loss: torch.Tensor) -> torch.Tensor:
        """Return the loss to minimise (add a regulariser, replace it by a distillation loss)."""
        return loss

    def after_backward(self, trainer: "Trainer") -> None:
        """Gradients are computed, the optimiser has not stepped (mask or clip gradients here)."""

    def after_step(self, trainer: "Trainer") -> None:
        """The optimiser has stepped (re-apply masks, proximal updates here)."""

    def on_epoch_end(self, trainer: "Trainer", epoch: int, metrics: dict[str, Any]) -> None:
        """After evaluation; add entries to ``metrics`` to log them."""

    def on_fit_end(self, trainer: "Trainer") -> None:
        """After the last epoch."""

    def state_dict(self) -> dict[str, Any]:
        """State to save in checkpoints (tensors and plain data only)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
