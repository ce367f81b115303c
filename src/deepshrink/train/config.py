"""Training configuration: plain data, validated, stored in checkpoints for resume checks."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from deepshrink.errors import UserError
from deepshrink.train.optim import OPTIMIZERS
from deepshrink.train.schedule import SCHEDULES

# Settings that may differ between an interrupted run and its resumption.
RESUME_FREE = ("device", "progress", "eval_batch_size")

# Arithmetic of the training forward pass: float32, or autocast to float16 (with dynamic loss
# scaling) or bfloat16; the weights and the optimiser stay float32 in every case.
PRECISIONS = ("fp32", "fp16", "bf16")

# Settings added after runs were saved, with the value every older run had.
ADDED_SETTINGS = {"precision": "fp32"}


@dataclass
class TrainConfig:
    """Hyper-parameters of one training run. Learning rates are per step, epochs are counts."""

    epochs: int = 10
    batch_size: int = 128
    eval_batch_size: int = 500
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    milestones: tuple[float, ...] = field(default_factory=tuple)
    gamma: float = 0.1
    label_smoothing: float = 0.0
    augment: bool = True
    seed: int = 0
    eval_every: int = 1
    max_bad_steps: int = 20
    channels_last: bool = True  # NHWC memory format for 4-D tensors: faster convolutions on CPU (oneDNN)
    device: str = "auto"
    precision: str = "fp32"  # one of PRECISIONS
    progress: bool | None = None  # None: show progress bars only on a terminal

    def __post_init__(self) -> None:
        self.milestones = tuple(float(m) for m in self.milestones)
        checks = [
            (self.epochs >= 0, f"epochs must be >= 0, got {self.epochs}"),
            (self.batch_size >= 1, f"batch size must be >= 1, got {self.batch_size}"),
            (self.eval_batch_size >= 1, f"eval batch size must be >= 1, got {self.eval_batch_size}"),
            (self.lr > 0, f"learning rate must be > 0, got {self.lr}"),
            (0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum}"),
            (self.weight_decay >= 0, f"weight decay must be >= 0, got {self.weight_decay}"),
            (0 <= self.label_smoothing < 1, f"label smoothing must be in [0, 1), got {self.label_smoothing}"),
            (self.warmup_epochs >= 0, f"warm-up epochs must be >= 0, got {self.warmup_epochs}"),
            (self.gamma > 0, f"gamma must be > 0, got {self.gamma}"),
            (self.eval_every >= 1, f"eval-every must be >= 1, got {self.eval_every}"),
            (self.max_bad_steps >= 1, f"max bad steps must be >= 1, got {self.max_bad_steps}"),
            (self.optimizer in OPTIMIZERS, f"unknown optimizer {self.optimizer!r}; choose one of: {', '.join(OPTIMIZERS)}"),
            (self.schedule in SCHEDULES, f"unknown schedule {self.schedule!r}; choose one of: {', '.join(SCHEDULES)}"),
            (self.precision in PRECISIONS, f"unknown precision {self.precision!r}; choose one of: {', '.join(PRECISIONS)}"),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(message)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["milestones"] = list(self.milestones)
        return data

    def resume_conflicts(self, saved: dict[str, Any]) -> list[str]:
        """Names of settings that differ from the ``saved`` run's (those that change results)."""
        mine = self.to_dict()
        saved = with_added_settings(saved)
        return [k for k in mine if k not in RESUME_FREE and k in saved and saved[k] != mine[k]]


def with_added_settings(saved: dict[str, Any]) -> dict[str, Any]:
    """A saved run's settings, completed with :data:`ADDED_SETTINGS` it predates."""
    return {**ADDED_SETTINGS, **saved}
