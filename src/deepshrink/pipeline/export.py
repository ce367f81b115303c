"""The export job: a model file -> ONNX (float32), int8 ONNX (QDQ, run by ONNX Runtime), or a
float16/bfloat16 model file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from deepshrink.data import BatchLoader, ImageDataset
from deepshrink.errors import UserError
from deepshrink.models import ModelInfo, load_model, save_model
from deepshrink.pipeline.datasets import check_fits

FORMATS = ("onnx", "int8-onnx", "fp16", "bf16")
_HALF = {"fp16": torch.float16, "bf16": torch.bfloat16}


def export_job(model_file: str | os.PathLike, fmt: str, out: str | os.PathLike, *,
               calibration_set: ImageDataset | None = None, calibration_method: str = "minmax",
               keep_float: Sequence[str] | None = None, use_model_quantizers: bool = True,
               reduce_range: bool = False) -> Path:
    """Export ``model_file`` as ``fmt`` to ``out``.

    ``int8-onnx`` needs ``calibration_set`` (a few hundred training images); ``keep_float``
    names the modules left in float32 (default: the first conv and the last classifier);
    ``use_model_quantizers`` False ignores the model's own weight and activation quantizers
    and lets ONNX Runtime calibrate every int8 tensor; ``reduce_range`` holds int8 weights to
    [-64, 64] for x86 CPUs without VNNI (see :mod:`deepshrink.quant.int8`).
    """
    if fmt not in FORMATS:
        raise UserError(f"unknown export format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    model, info = load_model(model_file)
    if fmt in _HALF:
        record = {"stage": "export", "format": fmt}
        return save_model(out, model, _with(info, record), dtype=_HALF[fmt])
    from deepshrink.quant.onnx_export import export_onnx

    if fmt == "onnx":
        return export_onnx(model, _with(info, {"stage": "export", "format": "onnx"}), out)
    from deepshrink.quant.int8 import export_int8_onnx

    if calibration_set is None:
        raise UserError("int8-onnx export needs calibration data: give --data (and --data-dir)")
    check_fits(info, calibration_set)
    batches = [x for x, _ in BatchLoader(calibration_set, 64, mean=info.input.mean, std=info.input.std)]
    floats = first_and_last_layers(model) if keep_float is None else list(keep_float)
    return export_int8_onnx(model, info, out, batches, method=calibration_method, keep_float=floats,
                            use_model_quantizers=use_model_quantizers, reduce_range=reduce_range)


def first_and_last_layers(model: nn.Module) -> list[str]:
    """Names of the first and the last Conv2d/Linear (the stem and the classifier)."""
    names = [name for name, m in model.named_modules()
             if isinstance(m, (nn.Conv2d, nn.Linear)) and "parametrizations" not in name.split(".")]
    return sorted(set(names[:1] + names[-1:]), key=names.index)


def _with(info: ModelInfo, record: dict) -> ModelInfo:
    return ModelInfo(info.arch, info.input, info.classes, info.dataset, [*info.history, record])
