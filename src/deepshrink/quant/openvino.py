"""OpenVINO, an optional second engine: IR (``.xml`` + ``.bin``) written from our ONNX export,
and IR or ONNX files run by OpenVINO's CPU plugin behind an ``nn.Module`` face (like
:class:`~deepshrink.quant.onnx_export.OnnxModel`).

An int8 IR comes from our int8 QDQ ONNX model (:mod:`deepshrink.quant.int8`): OpenVINO's
``convert_model`` turns each QuantizeLinear/DequantizeLinear pair on an activation into a
``FakeQuantize`` and each int8 weight initializer into an int8 constant with its dequantising
``Convert``/``Multiply``, so the scales and zero points in the IR are the ones the QDQ model holds
(the model's own, where it carried quantizers). The CPU plugin then runs those convolutions in
int8.

The model's :class:`~deepshrink.models.ModelInfo` travels in the IR's ``rt_info`` (key
``deepshrink``), as it does in an ONNX file's metadata.

Float inference runs in float32: on CPUs with AMX or AVX-512 BF16, OpenVINO would otherwise
compute in bfloat16 by default, which is a different (less exact) model than the other engines
run. ``openvino`` is imported only when needed; without it every entry point raises one
:class:`UserError` naming the extra to install.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from torch import nn

from deepshrink.errors import UserError
from deepshrink.files import atomic_path
from deepshrink.models.file import METADATA_KEY, ModelInfo

INSTALL_HINT = "OpenVINO is not installed; install it with: pip install 'deepshrink[openvino]'"


def require_openvino():
    """The ``openvino`` module, or a UserError saying how to install it."""
    try:
        import openvino
    except ImportError:
        raise UserError(INSTALL_HINT) from None
    return openvino


def openvino_version() -> str:
    """The release, e.g. ``2026.4.1`` (without the build suffix)."""
    return require_openvino().get_version().split("-")[0]


def is_ir(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() == ".xml"


def export_openvino(onnx_path: str | os.PathLike, info: ModelInfo, out: str | os.PathLike) -> Path:
    """Convert a deepshrink ONNX file (float or int8 QDQ) to OpenVINO IR ``out`` (``.xml``,
    its weights in ``.bin`` beside it; float weights stay float32). Each file is written
    atomically, the ``.bin`` first."""
    ov = require_openvino()
    out = Path(out)
    if not is_ir(out):
        raise UserError(f"OpenVINO IR goes to an .xml file (its weights to the .bin beside it), got {out}")
    try:
        model = ov.convert_model(str(onnx_path))
    except Exception as exc:  # OpenVINO raises its own exception types for graphs it cannot read
        raise UserError(f"OpenVINO cannot convert {onnx_path}: {str(exc).splitlines()[0]}") from None
    model.set_rt_info(json.dumps(info.to_dict()), [METADATA_KEY])
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.stem}.", dir=out.parent))
    try:
        ov.save_model(model, str(work / out.name), compress_to_fp16=False)
        for target in (out.with_suffix(".bin"), out):
            with atomic_path(target) as tmp:
                shutil.copyfile(work / target.name, tmp)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def read_info(path: str | os.PathLike) -> ModelInfo:
    """The ModelInfo stored in an IR file written by :func:`export_openvino`."""
    model = _read(path)
    if not model.has_rt_info([METADATA_KEY]):
        raise UserError(f"{path} was not exported by deepshrink (no '{METADATA_KEY}' rt_info)")
    try:
        return ModelInfo.from_dict(json.loads(model.get_rt_info([METADATA_KEY]).astype(str)))
    except (ValueError, KeyError, TypeError):
        raise UserError(f"{path}: malformed deepshrink rt_info") from None


def ir_op_counts(path: str | os.PathLike) -> Counter:
    """How many operations of each type (``Convolution``, ``FakeQuantize``, ...) the IR or ONNX
    file holds as OpenVINO reads it, and constants by element type (``Constant:i8``, ...)."""
    counts: Counter = Counter()
    for op in _read(path).get_ops():
        name = op.get_type_name()
        if name == "Constant":
            name = f"Constant:{op.get_element_type().get_type_name()}"
        counts[name] += 1
    return counts


def _read(path: str | os.PathLike):
    ov = require_openvino()
    if not Path(path).is_file():
        raise UserError(f"file not found: {path}")
    try:
        return ov.Core().read_model(str(path))
    except Exception as exc:
        raise UserError(f"OpenVINO cannot read {path}: {str(exc).splitlines()[0]}") from None


class OpenVinoModel(nn.Module):
    """An IR or ONNX file compiled by OpenVINO for the CPU in float32 with ``threads`` inference
    threads; call it like the model it came from. ``batch`` fixes the batch size (a static
    shape, which OpenVINO runs faster: what a deployment that knows its batch would do);
    otherwise the batch stays dynamic."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None, batch: int | None = None):
        super().__init__()
        model = _read(path)
        if batch is not None:
            shape = model.inputs[0].get_partial_shape()
            shape[0] = batch
            model.reshape({model.inputs[0].get_any_name(): shape})
        config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY",
                  "INFERENCE_NUM_THREADS": int(threads or torch.get_num_threads())}
        try:
            compiled = require_openvino().Core().compile_model(model, "CPU", config)
        except Exception as exc:
            raise UserError(f"OpenVINO cannot compile {path}: {str(exc).splitlines()[0]}") from None
        self.request = compiled.create_infer_request()
        self.path = Path(path)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(inputs.detach().cpu().numpy(), dtype=np.float32)
        self.request.infer({0: array})
        return torch.from_numpy(self.request.get_output_tensor(0).data.copy())
