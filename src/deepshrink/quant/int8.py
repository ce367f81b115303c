"""Real int8 execution: a model becomes an ONNX graph with QuantizeLinear/DequantizeLinear
pairs (QDQ) that ONNX Runtime fuses into int8 kernels — int8 x int8 products accumulated in
int32, then requantised (QLinearConv / MatMulInteger on x86 with VNNI where available).

Where the model carries its own quantizers (``use_model_quantizers``, the default), ORT is told
to use them (see :mod:`deepshrink.quant.int8_overrides`): linear weight quantizers of at most 8
bits become per-channel int8 with exactly the model's levels (BatchNorm folding included), and
frozen 8-bit activation quantizers fix the scale and zero point of the tensors they quantize.
Everything else is ORT's own choice: weights per-output-channel symmetric int8 (scale = max|w| /
127, the convention of :mod:`deepshrink.quant.linear`, so 8-bit symmetric fake-quantized weights
are represented exactly); activations asymmetric uint8 with ranges calibrated on real images.

``reduce_range`` is for x86 CPUs without VNNI (AVX2 only: many AMD EPYC and older Intel parts).
There ORT's uint8 x int8 kernels add two products in int16 with saturation, so full-range int8
weights (|w| up to 127 against activations up to 255) give wrong sums; with ``reduce_range``
weights are held to [-64, 64] (ORT's 7-bit weights, and the model's own levels only where they
fit), which cannot saturate. CPUs with VNNI (or AMX) accumulate in int32 and need none of this.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from torch import nn

from deepshrink.errors import UserError
from deepshrink.files import atomic_path
from deepshrink.models.attach import copy_model
from deepshrink.models.file import ModelInfo
from deepshrink.quant.activation import activation_quantizers_of, remove_activation_quantizers
from deepshrink.quant.int8_overrides import ModelOverrides, model_overrides, module_nodes
from deepshrink.quant.onnx_export import export_onnx, set_info

CALIBRATION_METHODS = ("minmax", "percentile", "entropy")


def export_int8_onnx(model: nn.Module, info: ModelInfo, path: str | os.PathLike,
                     calibration: Iterable[torch.Tensor], *, method: str = "minmax",
                     keep_float: Sequence[str] = (), per_channel: bool = True,
                     use_model_quantizers: bool = True, reduce_range: bool = False) -> Path:
    """Write an int8 QDQ ONNX model of ``model`` to ``path``.

    ``calibration`` yields normalised float input batches (N, C, H, W) — a few hundred images
    are enough. ``keep_float`` names modules (e.g. the first conv and the classifier) whose
    operators stay in float32. With ``use_model_quantizers`` the model's linear weight
    quantizers and frozen 8-bit activation quantizers set the int8 parameters of the tensors
    they cover (calibration still sets the rest); without it ORT calibrates everything.
    Activation quantizers never enter the graph as float operators: QDQ pairs replace them.
    ``reduce_range`` holds int8 weights to [-64, 64] for CPUs without VNNI (module docstring).
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
               "entropy": CalibrationMethod.Entropy}
    if method not in methods:
        raise UserError(f"unknown calibration method {method!r}; choose one of: {', '.join(methods)}")
    batches = [b.detach().cpu().float().numpy() for b in calibration]
    if not batches:
        raise UserError("int8 export needs calibration images")
    with tempfile.TemporaryDirectory() as work:
        float_path, prepared = Path(work, "float.onnx"), Path(work, "prepared.onnx")
        export_onnx(_without_activation_quantizers(model), info, float_path)
        quant_pre_process(str(float_path), str(prepared))
        prepared_graph = onnx.load(str(prepared))
        excluded = module_nodes(prepared_graph, keep_float)
        overrides = (model_overrides(prepared_graph, model, keep_float, reduce_range) if use_model_quantizers
                     else ModelOverrides())
        int8_path = Path(work, "int8.onnx")
        quantize_static(str(prepared), str(int8_path), _Reader(batches), quant_format=QuantFormat.QDQ,
                        per_channel=per_channel, weight_type=QuantType.QInt8,
                        activation_type=QuantType.QUInt8, calibrate_method=methods[method], reduce_range=reduce_range,
                        nodes_to_exclude=excluded, extra_options=_extra_options(overrides))
        graph = onnx.load(str(int8_path))
        overrides.confirm(graph)
        record = {"stage": "export", "format": "int8-onnx", "calibration": method,
                  "calibration_images": int(sum(len(b) for b in batches)), "float_modules": list(keep_float)}
        if reduce_range:
            record["reduce_range"] = True
        if overrides.weights or overrides.activations or overrides.skipped:
            record["model_quantizers"] = {"weights": overrides.weights, "activations": overrides.activations,
                                          "left_to_calibration": overrides.skipped}
        set_info(graph, ModelInfo(info.arch, info.input, info.classes, info.dataset, [*info.history, record]))
        with atomic_path(path) as tmp:
            onnx.save(graph, str(tmp))
    return Path(path)


def _without_activation_quantizers(model: nn.Module) -> nn.Module:
    """``model`` itself if it has no activation quantizers, else a copy without them."""
    if not activation_quantizers_of(model):
        return model
    return remove_activation_quantizers(copy_model(model))


def _extra_options(overrides: ModelOverrides) -> dict:
    """``quantize_static``'s extra options. ORT drops a Relu/Clip into the quantization after
    it, which clips the same only for an asymmetric range starting at 0; an activation pinned
    to signed int8 needs them kept."""
    options: dict = {"WeightSymmetric": True}
    if overrides.tensors:
        options["TensorQuantOverrides"] = overrides.tensors
    if overrides.signed_activations:
        options["QDQKeepRemovableActivations"] = True
    return options


class _Reader:
    """ONNX Runtime's CalibrationDataReader protocol over a list of batches."""

    def __init__(self, batches: list[np.ndarray]):
        self._batches = iter(batches)

    def get_next(self):
        batch = next(self._batches, None)
        return None if batch is None else {"input": batch}

    def rewind(self):  # not needed by the static calibrators used here
        raise NotImplementedError
