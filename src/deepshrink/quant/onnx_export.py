"""ONNX export of a model (quantizers and masks baked into plain weights), and running ONNX
files with ONNX Runtime behind an ``nn.Module`` face so the evaluation and latency tools work
on them unchanged.

The model's :class:`~deepshrink.models.ModelInfo` travels in the ONNX file's
``metadata_props`` (key ``deepshrink``), so an exported file still knows its input
normalisation and classes.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from deepshrink.errors import UserError
from deepshrink.files import atomic_path
from deepshrink.models.attach import baked_copy
from deepshrink.models.file import METADATA_KEY, ModelInfo

OPSET = 17


def export_onnx(model: nn.Module, info: ModelInfo, path: str | os.PathLike) -> Path:
    """Write ``model`` as a float32 ONNX graph with a dynamic batch dimension; input ``input``
    (N, C, H, W) normalised as ``info.input`` says, output ``logits`` (N, classes)."""
    import onnx

    path = Path(path)
    example = torch.zeros(1, *info.input.shape)
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(baked_copy(model), (example,), str(tmp), input_names=["input"],
                          output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                          opset_version=OPSET, dynamo=False)
        graph = onnx.load(str(tmp))
        set_info(graph, info)
        onnx.save(graph, str(tmp))
    return path


def set_info(graph, info: ModelInfo) -> None:
    """Store ``info`` as JSON in an ONNX ModelProto's metadata."""
    for prop in list(graph.metadata_props):
        if prop.key == METADATA_KEY:
            graph.metadata_props.remove(prop)
    entry = graph.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(info.to_dict())


class OnnxModel(nn.Module):
    """An ONNX file run by ONNX Runtime on the CPU; call it like the model it was exported from
    (float tensor (N, C, H, W) in, logits out). It has no parameters to train."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        super().__init__()
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own exception types for unreadable graphs
            raise UserError(f"ONNX Runtime cannot load {path}: {str(exc).splitlines()[0]}") from None
        self.input_name = self.session.get_inputs()[0].name
        self.path = Path(path)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(inputs.detach().cpu().numpy(), dtype=np.float32)
        return torch.from_numpy(self.session.run(None, {self.input_name: array})[0])


def load_onnx(path: str | os.PathLike, threads: int | None = None) -> tuple[OnnxModel, ModelInfo]:
    """An exported ONNX file and the ModelInfo stored in it."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise UserError(f"ONNX file not found: {path}")
    try:
        graph = onnx.load(str(path), load_external_data=False)
    except Exception:
        raise UserError(f"{path} is not a readable ONNX file") from None
    raw = next((p.value for p in graph.metadata_props if p.key == METADATA_KEY), None)
    if raw is None:
        raise UserError(f"{path} was not exported by deepshrink (no '{METADATA_KEY}' metadata)")
    try:
        info = ModelInfo.from_dict(json.loads(raw))
    except (ValueError, KeyError, TypeError):
        raise UserError(f"{path}: malformed deepshrink metadata") from None
    return OnnxModel(path, threads), info


def onnx_weight_count(path: str | os.PathLike) -> tuple[int, int]:
    """(elements, non-zero elements) of the weight initializers (rank >= 2) of an ONNX file."""
    import onnx
    from onnx import numpy_helper

    total = nonzero = 0
    for init in onnx.load(str(path)).graph.initializer:
        if len(init.dims) >= 2:
            array = numpy_helper.to_array(init)
            total += array.size
            nonzero += int(np.count_nonzero(array))
    return total, nonzero
