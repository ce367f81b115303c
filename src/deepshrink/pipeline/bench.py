"""The bench job: inference latency of a model file."""

from __future__ import annotations

import os
from typing import Any

from deepshrink.analysis import measure_latency
from deepshrink.models import load_model


def bench_model_file(path: str | os.PathLike, *, batch: int = 1, threads: int | None = None,
                     warmup: int = 5, repeats: int = 30) -> dict[str, Any]:
    """Median latency (ms per batch) and images/s of the model in ``path`` on the CPU."""
    model, info = load_model(path)
    latency = measure_latency(model, info.input.shape, batch=batch, threads=threads,
                              warmup=warmup, repeats=repeats)
    return {"model": info.arch.name, **latency.to_dict()}
