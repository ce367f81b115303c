"""Opening anything the commands evaluate or time: a model file, a compressed ``.dsz`` file, or
an exported ONNX file."""

from __future__ import annotations

import os
from pathlib import Path

from torch import nn

from deepshrink.analysis import count_params
from deepshrink.models import ModelInfo, load_model


def is_onnx(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() == ".onnx"


def is_dsz(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() == ".dsz"


def open_model(path: str | os.PathLike, threads: int | None = None) -> tuple[nn.Module, ModelInfo]:
    """(callable model, info) for a model file, a ``.dsz`` file (decoded in memory) or a
    deepshrink-exported ``.onnx`` file (run by ONNX Runtime with ``threads`` intra-op threads)."""
    if is_onnx(path):
        from deepshrink.quant.onnx_export import load_onnx

        return load_onnx(path, threads)
    if is_dsz(path):
        from deepshrink.codec import load_dsz

        return load_dsz(path)
    return load_model(path)


def weight_counts(model: nn.Module, path: str | os.PathLike) -> tuple[int, int]:
    """(parameters, non-zero parameters); for ONNX files, of the weight initializers."""
    if is_onnx(path):
        from deepshrink.quant.onnx_export import onnx_weight_count

        return onnx_weight_count(path)
    counts = count_params(model)
    return counts.total, counts.nonzero
