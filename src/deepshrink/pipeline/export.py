"""The export job: a model file -> ONNX (float32), int8 ONNX (QDQ, run by ONNX Runtime), OpenVINO
IR (float32, or int8 from the int8 QDQ model), or a float16/bfloat16 model file. A deepshrink
``.onnx`` file (float or int8) converts to OpenVINO IR as it is."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from deepshrink.data import BatchLoader, ImageDataset
from deepshrink.errors import UserError
from deepshrink.models import ModelInfo, load_model, save_model
from deepshrink.pipeline.datasets import check_fits
from deepshrink.pipeline.open import is_onnx

FORMATS = ("onnx", "int8-onnx", "fp16", "bf16")  # also the formats of a recipe's export stage
OPENVINO_FORMATS = ("openvino", "int8-openvino")  # an .xml + .bin pair: command line only, so far
ALL_FORMATS = FORMATS + OPENVINO_FORMATS
INT8_FORMATS = ("int8-onnx", "int8-openvino")
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
    [-64, 64] for x86 CPUs without VNNI (see :mod:`deepshrink.quant.int8`). The OpenVINO
    formats write ``out`` (``.xml``) and its ``.bin``; ``int8-openvino`` takes the int8-onnx
    options and converts that QDQ graph, so the IR keeps its scales.
    """
    if fmt not in ALL_FORMATS:
        raise UserError(f"unknown export format {fmt!r}; choose one of: {', '.join(ALL_FORMATS)}")
    if is_onnx(model_file):
        return _onnx_to_openvino(model_file, fmt, out)
    if fmt in OPENVINO_FORMATS:
        return _via_onnx(model_file, fmt, out, calibration_set=calibration_set, calibration_method=calibration_method,
                         keep_float=keep_float, use_model_quantizers=use_model_quantizers, reduce_range=reduce_range)
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


def _via_onnx(model_file: str | os.PathLike, fmt: str, out: str | os.PathLike, **int8_options) -> Path:
    """OpenVINO IR of ``model_file``: its (int8) ONNX export, converted."""
    from deepshrink.quant.openvino import is_ir, require_openvino

    require_openvino()  # before the slow int8 calibration
    if not is_ir(out):
        raise UserError(f"--format {fmt} writes an .xml file (its weights to the .bin beside it), got {out}")
    with tempfile.TemporaryDirectory() as work:
        onnx_path = export_job(model_file, fmt.replace("openvino", "onnx"), Path(work, "model.onnx"), **int8_options)
        return _onnx_to_openvino(onnx_path, "openvino", out, fmt)


def _onnx_to_openvino(onnx_path: str | os.PathLike, fmt: str, out: str | os.PathLike,
                      recorded: str | None = None) -> Path:
    """A deepshrink ``.onnx`` file (float or int8 QDQ) as OpenVINO IR; ``recorded`` names the
    format in the history (default: ``openvino``, or ``int8-openvino`` for an int8 graph)."""
    from deepshrink.quant.onnx_export import load_onnx
    from deepshrink.quant.openvino import export_openvino, openvino_version

    if fmt != "openvino":
        raise UserError(f"a .onnx file exports only to --format openvino (got {fmt}); "
                        "give the model file for the other formats")
    info = load_onnx(onnx_path, threads=1)[1]
    was_int8 = any(record.get("format") == "int8-onnx" for record in info.history)
    record = {"stage": "export", "format": recorded or ("int8-openvino" if was_int8 else "openvino"),
              "openvino": openvino_version()}
    return export_openvino(onnx_path, _with(info, record), out)


def first_and_last_layers(model: nn.Module) -> list[str]:
    """Names of the first and the last Conv2d/Linear (the stem and the classifier)."""
    names = [name for name, m in model.named_modules()
             if isinstance(m, (nn.Conv2d, nn.Linear)) and "parametrizations" not in name.split(".")]
    return sorted(set(names[:1] + names[-1:]), key=names.index)


def _with(info: ModelInfo, record: dict) -> ModelInfo:
    return ModelInfo(info.arch, info.input, info.classes, info.dataset, [*info.history, record])
