"""The embedded default: train the small CNN on scikit-learn's 8x8 digits and report it.

Real data, no download, well under a minute on 2 CPU cores. Later issues extend it into the
whole compression pipeline.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from deepshrink.analysis import count_params
from deepshrink.data import load_dataset
from deepshrink.pipeline.train import train_job
from deepshrink.train import TrainConfig
from deepshrink.train.trainer import FINAL_MODEL

DEMO_CONFIG = TrainConfig(epochs=30, batch_size=64, lr=0.05, weight_decay=5e-4,
                          schedule="cosine", seed=0)


@dataclass(frozen=True)
class DemoResult:
    model_path: Path
    top1: float          # test accuracy, fraction
    params: int
    train_images: int
    test_images: int
    epochs: int
    seconds: float


def run_demo(out_dir: str | os.PathLike = "runs/demo", *, epochs: int | None = None,
             progress: bool | None = None) -> DemoResult:
    """Train ``digits-cnn`` on the digits set, save it under ``out_dir``, return the figures."""
    start = time.perf_counter()
    train_set, test_set = load_dataset("digits", "train"), load_dataset("digits", "test")
    config = TrainConfig(**{**DEMO_CONFIG.to_dict(), "progress": progress,
                            "epochs": DEMO_CONFIG.epochs if epochs is None else epochs})
    trainer, result = train_job(train_set, test_set, config, model_name="digits-cnn", out_dir=out_dir)
    return DemoResult(Path(out_dir) / FINAL_MODEL, result.final.top1,
                      count_params(trainer.model).total, len(train_set), len(test_set),
                      config.epochs, time.perf_counter() - start)
