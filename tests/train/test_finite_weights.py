"""Non-finite weights (issue 24): a step that leaves a parameter inf/NaN is undone and counted as
a bad step, no run file is written from such a model, and TrainConfig refuses non-finite numbers."""

from __future__ import annotations

import math

import pytest
import torch

from deepshrink.data import load_dataset
from deepshrink.errors import ConfigError
from deepshrink.models import load_model
from deepshrink.pipeline.train import train_job
from deepshrink.train import TrainConfig, TrainHook, TrainingDiverged


@pytest.fixture(scope="module")
def synthetic():
    return load_dataset("synthetic", "train").subset(128), load_dataset("synthetic", "test").subset(64)


class InfiniteGradients(TrainHook):
    """Makes every gradient infinite while the loss stays finite (as --lr inf did to the weights)."""

    def after_backward(self, trainer) -> None:
        for p in trainer.model.parameters():
            if p.grad is not None:
                p.grad.fill_(math.inf)


def _config(**overrides):
    base = dict(epochs=1, batch_size=32, lr=0.05, seed=0, progress=False, eval_batch_size=64, device="cpu")
    return TrainConfig(**{**base, **overrides})


def _finite(state: dict) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in state.values() if t.is_floating_point())


def test_a_step_that_makes_weights_non_finite_is_undone_and_counted(synthetic, tmp_path):
    train_set, test_set = synthetic
    trainer, result = train_job(train_set, test_set, _config(max_bad_steps=100), model_name="digits-cnn",
                                out_dir=tmp_path, hooks=[InfiniteGradients()])
    assert result.history[0]["skipped_steps"] == 4  # every step undone
    assert _finite(trainer.model.state_dict())
    model, _ = load_model(tmp_path / "model.safetensors")
    assert _finite(model.state_dict())


def test_steps_that_keep_making_weights_non_finite_stop_the_run(synthetic, tmp_path):
    train_set, test_set = synthetic
    with pytest.raises(TrainingDiverged, match="the step left weights inf/NaN for 3 consecutive steps"):
        train_job(train_set, test_set, _config(max_bad_steps=3), model_name="digits-cnn",
                  out_dir=tmp_path, hooks=[InfiniteGradients()])
    assert not (tmp_path / "model.safetensors").exists()


def test_no_run_file_is_written_from_a_model_with_non_finite_values(synthetic, tmp_path):
    class PoisonAtEpochEnd(TrainHook):
        def on_epoch_end(self, trainer, epoch, record) -> None:
            with torch.no_grad():
                next(trainer.model.parameters()).fill_(math.nan)

    train_set, test_set = synthetic
    with pytest.raises(TrainingDiverged, match="holds inf/NaN values; .*last.ckpt is not written"):
        train_job(train_set, None, _config(), model_name="digits-cnn", out_dir=tmp_path, hooks=[PoisonAtEpochEnd()])
    assert not (tmp_path / "last.ckpt").exists()


@pytest.mark.parametrize("field, value, problem", [
    ("lr", math.inf, "must be a finite number > 0, got inf"),
    ("lr", 1e39, "must be a finite number > 0"),
    ("lr", math.nan, "must be a finite number > 0"),
    ("weight_decay", math.inf, "must be a finite number >= 0, got inf"),
    ("gamma", math.inf, "must be a finite number > 0, got inf"),
    ("warmup_epochs", math.inf, "must be a finite number >= 0, got inf"),
    ("milestones", (1.0, math.inf), "must be finite numbers > 0"),
    ("momentum", math.nan, "must be in [0, 1)"),
    ("epochs", 1.5, "must be an integer >= 0"),
])
def test_train_config_refuses_non_finite_numbers_naming_the_field(field, value, problem):
    with pytest.raises(ConfigError) as caught:
        TrainConfig(**{field: value})
    assert caught.value.field == field
    assert str(caught.value).startswith(f"TrainConfig.{field} {problem}")
