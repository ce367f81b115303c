"""Real int8 execution: a model becomes an ONNX graph with QuantizeLinear/DequantizeLinear
pairs (QDQ) that ONNX Runtime fuses into int8 kernels — int8 x int8 products accumulated in
int32, then requantised (QLinearConv / MatMulInteger on x86 with VNNI where available).

Weights: per-output-channel symmetric int8 (scale = max|w| / 127, the same convention as
:mod:`deepshrink.quant.linear`, so 8-bit symmetric fake-quantized weights are represented
exactly). Activations: asymmetric uint8 with ranges calibrated on real images.
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
from deepshrink.models.file import ModelInfo
from deepshrink.quant.onnx_export import export_onnx, set_info

CALIBRATION_METHODS = ("minmax", "percentile", "entropy")


def export_int8_onnx(model: nn.Module, info: ModelInfo, path: str | os.PathLike,
                     calibration: Iterable[torch.Tensor], *, method: str = "minmax",
                     keep_float: Sequence[str] = (), per_channel: bool = True) -> Path:
    """Write an int8 QDQ ONNX model of ``model`` to ``path``.

    ``calibration`` yields normalised float input batches (N, C, H, W) — a few hundred images
    are enough. ``keep_float`` names modules (e.g. the first conv and the classifier) whose
    operators stay in float32.
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
        export_onnx(model, info, float_path)
        quant_pre_process(str(float_path), str(prepared))
        excluded = _nodes_of(onnx.load(str(prepared)), keep_float)
        int8_path = Path(work, "int8.onnx")
        quantize_static(str(prepared), str(int8_path), _Reader(batches), quant_format=QuantFormat.QDQ,
                        per_channel=per_channel, weight_type=QuantType.QInt8,
                        activation_type=QuantType.QUInt8, calibrate_method=methods[method],
                        nodes_to_exclude=excluded, extra_options={"WeightSymmetric": True})
        graph = onnx.load(str(int8_path))
        record = {"stage": "export", "format": "int8-onnx", "calibration": method,
                  "calibration_images": int(sum(len(b) for b in batches)), "float_modules": list(keep_float)}
        set_info(graph, ModelInfo(info.arch, info.input, info.classes, info.dataset, [*info.history, record]))
        with atomic_path(path) as tmp:
            onnx.save(graph, str(tmp))
    return Path(path)


def _nodes_of(graph, module_names: Sequence[str]) -> list[str]:
    """ONNX node names that the TorchScript exporter generated for the given modules
    (it names them ``/layer1/0/conv1/Conv``)."""
    prefixes = ["/" + name.replace(".", "/") + "/" for name in module_names]
    return [node.name for node in graph.graph.node if any(node.name.startswith(p) for p in prefixes)]


class _Reader:
    """ONNX Runtime's CalibrationDataReader protocol over a list of batches."""

    def __init__(self, batches: list[np.ndarray]):
        self._batches = iter(batches)

    def get_next(self):
        batch = next(self._batches, None)
        return None if batch is None else {"input": batch}

    def rewind(self):  # not needed by the static calibrators used here
        raise NotImplementedError
