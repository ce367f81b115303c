"""Training configuration: plain data, validated, stored in checkpoints for resume checks."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from deepshrink.errors import check_fields, is_int, is_number
from deepshrink.train.optim import OPTIMIZERS
from deepshrink.train.schedule import SCHEDULES

# Settings that may differ between an interrupted run and its resumption.
RESUME_FREE = ("device", "progress", "eval_batch_size")

# Arithmetic of the training forward pass: float32, or autocast to float16 (with dynamic loss
# scaling) or bfloat16; the weights and the optimiser stay float32 in every case.
PRECISIONS = ("fp32", "fp16", "bf16")

# The largest finite float32: rates and factors beyond it are infinite in the optimiser.
FLOAT32_MAX = 3.4028234663852886e38

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
        if isinstance(self.milestones, (list, tuple)) and all(is_number(m) for m in self.milestones):
            self.milestones = tuple(float(m) for m in self.milestones)
        check_fields(self, [
            (_int_at_least(self.epochs, 0), "epochs", f"must be an integer >= 0, got {self.epochs!r}"),
            (_int_at_least(self.batch_size, 1), "batch_size", f"must be an integer >= 1, got {self.batch_size!r}"),
            (_int_at_least(self.eval_batch_size, 1), "eval_batch_size",
             f"must be an integer >= 1, got {self.eval_batch_size!r}"),
            (_finite(self.lr) and self.lr > 0, "lr", f"must be a finite number > 0, got {self.lr!r}"),
            (_finite(self.momentum) and 0 <= self.momentum < 1, "momentum", f"must be in [0, 1), got {self.momentum!r}"),
            (_finite(self.weight_decay) and self.weight_decay >= 0, "weight_decay",
             f"must be a finite number >= 0, got {self.weight_decay!r}"),
            (_finite(self.label_smoothing) and 0 <= self.label_smoothing < 1, "label_smoothing",
             f"must be in [0, 1), got {self.label_smoothing!r}"),
            (_finite(self.warmup_epochs) and self.warmup_epochs >= 0, "warmup_epochs",
             f"must be a finite number >= 0, got {self.warmup_epochs!r}"),
            (isinstance(self.milestones, tuple) and all(_finite(m) and m > 0 for m in self.milestones), "milestones",
             f"must be finite numbers > 0, got {self.milestones!r}"),
            (_finite(self.gamma) and self.gamma > 0, "gamma", f"must be a finite number > 0, got {self.gamma!r}"),
            (_int_at_least(self.eval_every, 1), "eval_every", f"must be an integer >= 1, got {self.eval_every!r}"),
            (_int_at_least(self.max_bad_steps, 1), "max_bad_steps", f"must be an integer >= 1, got {self.max_bad_steps!r}"),
            (self.optimizer in OPTIMIZERS, "optimizer", f"must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}"),
            (self.schedule in SCHEDULES, "schedule", f"must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}"),
            (self.precision in PRECISIONS, "precision",
             f"must be one of {', '.join(PRECISIONS)}, got {self.precision!r}"),
        ])

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


def _finite(value: Any) -> bool:
    """A real number (not a bool, NaN or infinity) that is finite in float32, the optimiser's type."""
    return is_number(value) and math.isfinite(value) and abs(value) <= FLOAT32_MAX


def _int_at_least(value: Any, low: int) -> bool:
    """An integer (not a bool) >= ``low``."""
    return is_int(value) and value >= low
