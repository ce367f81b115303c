"""Model files: one safetensors file holding the weights and, as JSON metadata, everything
needed to rebuild the module (architecture spec, expected input, class names, history).

No pickle anywhere: loading a model file cannot run code. Writing is atomic.

Metadata key ``deepshrink`` holds::

    {"format": "deepshrink-model", "version": 1,
     "arch": {"name": "resnet20", "kwargs": {...}},
     "input": {"shape": [C, H, W], "mean": [...], "std": [...]},
     "classes": [...], "dataset": "cifar10", "history": [{"stage": "train", ...}, ...],
     "parametrizations": [{"module": "layer1.0.conv1", "tensor": "weight", "kind": "mask", "args": {}}],
     "activation_quantizers": [{"module": "layer1.0.conv1", "role": "input", "args": {...}}]}

Parametrizations (pruning masks, quantizers) and hooked submodules of kind
``activation-quantizer`` (absent in older files), both through the registries of
:mod:`deepshrink.models.attach`, are recorded on save and re-attached on load, before the
tensors are loaded.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from deepshrink.errors import UserError
from deepshrink.files import atomic_path
from deepshrink.models.attach import (describe_hooked_submodules, describe_parametrizations,
                                      restore_hooked_submodules, restore_parametrizations)
from deepshrink.models.registry import ArchSpec, build_model

FORMAT = "deepshrink-model"
VERSION = 1
METADATA_KEY = "deepshrink"
ACTIVATION_QUANTIZER = "activation-quantizer"  # the hooked-submodule kind in "activation_quantizers"


@dataclass(frozen=True)
class InputSpec:
    """What the model eats: shape (C, H, W) of one image, and the per-channel mean/std that
    normalise pixels scaled to [0, 1]."""

    shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"shape": list(self.shape), "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "InputSpec":
        shape = tuple(int(v) for v in data["shape"])
        if len(shape) != 3:
            raise ValueError("input shape must be (C, H, W)")
        return cls(shape, tuple(map(float, data["mean"])), tuple(map(float, data["std"])))


@dataclass
class ModelInfo:
    """Everything in a model file besides the tensors."""

    arch: ArchSpec
    input: InputSpec
    classes: list[str] | None = None
    dataset: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    parametrizations: list[dict[str, Any]] = field(default_factory=list)  # filled by save_model
    activation_quantizers: list[dict[str, Any]] = field(default_factory=list)  # filled by save_model

    def to_dict(self) -> dict[str, Any]:
        data = {
            "format": FORMAT,
            "version": VERSION,
            "arch": self.arch.to_dict(),
            "input": self.input.to_dict(),
            "classes": self.classes,
            "dataset": self.dataset,
            "history": self.history,
            "parametrizations": self.parametrizations,
        }
        if self.activation_quantizers:
            data["activation_quantizers"] = self.activation_quantizers
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelInfo":
        return cls(
            arch=ArchSpec.from_dict(data["arch"]),
            input=InputSpec.from_dict(data["input"]),
            classes=data.get("classes"),
            dataset=data.get("dataset"),
            history=list(data.get("history") or []),
            parametrizations=list(data.get("parametrizations") or []),
            activation_quantizers=list(data.get("activation_quantizers") or []),
        )


def save_model(path: str | os.PathLike, model: nn.Module, info: ModelInfo,
               dtype: torch.dtype | None = None) -> Path:
    """Write ``model``'s state dict and ``info`` to ``path`` atomically; return the path.

    ``info.parametrizations`` and ``info.activation_quantizers`` are set from what is attached
    to the model. ``dtype`` (e.g. ``torch.float16``) stores floating tensors at that precision;
    loading casts them back to the model's float32.
    """
    info.parametrizations = describe_parametrizations(model)
    info.activation_quantizers = describe_hooked_submodules(model, ACTIVATION_QUANTIZER)
    tensors = {k: _stored(v, dtype) for k, v in model.state_dict().items()}
    metadata = {METADATA_KEY: json.dumps(info.to_dict())}
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path


def read_info(path: str | os.PathLike) -> ModelInfo:
    """Read only the metadata of a model file (cheap: tensors are not loaded)."""
    path = _existing(path)
    try:
        with open(path, "rb") as handle:
            header = _read_safetensors_header(handle, path)
    except OSError as exc:
        raise UserError(f"cannot read model file {path}: {exc.strerror}") from None
    raw = (header.get("__metadata__") or {}).get(METADATA_KEY)
    if raw is None:
        raise UserError(f"{path} is a safetensors file but not a deepshrink model file (no '{METADATA_KEY}' metadata)")
    try:
        data = json.loads(raw)
        if data.get("format") != FORMAT:
            raise ValueError(f"format is {data.get('format')!r}")
        if data.get("version") != VERSION:
            raise UserError(f"{path} is model-file version {data.get('version')}; this deepshrink reads version {VERSION}")
        return ModelInfo.from_dict(data)
    except UserError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UserError(f"{path}: malformed deepshrink metadata ({exc})") from None


def load_model(path: str | os.PathLike, map_location: str = "cpu") -> tuple[nn.Module, ModelInfo]:
    """Rebuild the module recorded in a model file and load its weights; returns (model, info).

    The model is returned in eval mode. Any problem with the file is a :class:`UserError`.
    """
    info = read_info(path)
    model = build_model(info.arch)
    restore_parametrizations(model, info.parametrizations)
    if info.activation_quantizers:
        restore_hooked_submodules(model, ACTIVATION_QUANTIZER, info.activation_quantizers)
    try:
        state = load_file(str(path), device=map_location)
    except (SafetensorError, OSError) as exc:
        raise UserError(f"cannot read the tensors of {path}: {exc}") from None
    load_state_strict(model, state, source=str(path))
    return model.eval(), info


def load_state_strict(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """``load_state_dict(strict=True)`` with a one-line :class:`UserError` on any mismatch."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {_few(missing)}")
        if unexpected:
            parts.append(f"unexpected {_few(unexpected)}")
        raise UserError(f"{source} does not fit its architecture: {'; '.join(parts)}")
    for key, tensor in state.items():
        if tensor.shape != expected[key].shape:
            raise UserError(
                f"{source}: tensor {key} has shape {tuple(tensor.shape)}, "
                f"the architecture needs {tuple(expected[key].shape)}"
            )
    model.load_state_dict(state, strict=True)


def _stored(tensor: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    tensor = tensor.detach().to("cpu")
    if dtype is not None and tensor.is_floating_point():
        tensor = tensor.to(dtype)
    return tensor.contiguous().clone()


def _few(keys: list[str], limit: int = 3) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" (and {len(keys) - limit} more)" if len(keys) > limit else "")


def _existing(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"model file not found: {path}")
    return path


def _read_safetensors_header(handle, path: Path) -> dict[str, Any]:
    prefix = handle.read(8)
    if len(prefix) != 8:
        raise UserError(f"{path} is not a model file (too short)")
    size = int.from_bytes(prefix, "little")
    total = path.stat().st_size
    if size <= 0 or size > min(total - 8, 100 * 1024 * 1024):
        raise UserError(f"{path} is not a model file (no safetensors header)")
    try:
        header = json.loads(handle.read(size))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise UserError(f"{path} is not a model file (unreadable safetensors header)") from None
    if not isinstance(header, dict):
        raise UserError(f"{path} is not a model file (unreadable safetensors header)")
    return header
