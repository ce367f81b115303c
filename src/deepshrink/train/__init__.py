"""Training engine: ``Trainer(model, train_set, test_set, TrainConfig(...)).fit()``."""

from deepshrink.train.checkpoint import load_checkpoint, save_checkpoint
from deepshrink.train.config import TrainConfig
from deepshrink.train.distill import DistillationHook, distillation_loss
from deepshrink.train.evaluate import EvalResult, evaluate
from deepshrink.train.hooks import TrainHook
from deepshrink.train.trainer import (
    TrainingDiverged,
    Trainer,
    TrainResult,
    lambda_schedule,
    resolve_device,
)

__all__ = [
    "DistillationHook",
    "EvalResult",
    "TrainConfig",
    "TrainHook",
    "TrainResult",
    "Trainer",
    "TrainingDiverged",
    "distillation_loss",
    "evaluate",
    "lambda_schedule",
    "load_checkpoint",
    "resolve_device",
    "save_checkpoint",
]
