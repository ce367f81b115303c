"""The bench job: inference latency of a model file or an exported ONNX file."""

from __future__ import annotations

import os
from typing import Any

from deepshrink.analysis import measure_latency
from deepshrink.errors import UserError
from deepshrink.models.inference import inference_copy
from deepshrink.pipeline.open import is_onnx, open_model


def bench_model_file(path: str | os.PathLike, *, batch: int = 1, threads: int | None = None,
                     warmup: int = 5, repeats: int = 30, optimize: bool = False) -> dict[str, Any]:
    """Median latency (ms per batch) and images/s of the model file or ``.onnx`` file in
    ``path`` on the CPU. ``optimize`` times the model as :func:`inference_copy` prepares it
    (BatchNorm folded, channels-last) instead of as stored."""
    if optimize and is_onnx(path):
        raise UserError("--optimize applies to model files; ONNX Runtime optimises .onnx graphs itself")
    model, info = open_model(path, threads)
    if optimize:
        model = inference_copy(model)
    latency = measure_latency(model, info.input.shape, batch=batch, threads=threads,
                              warmup=warmup, repeats=repeats)
    engine = "onnxruntime" if is_onnx(path) else "torch-optimized" if optimize else "torch"
    return {"model": info.arch.name, "engine": engine, **latency.to_dict()}
