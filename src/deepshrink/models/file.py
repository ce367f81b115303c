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

``arch`` may name a builder outside the zoo (``{"builder": "mypkg.nets:small_cnn", "kwargs":
{...}}``), imported only from packages the caller allows (``allow_builders``, see
:mod:`deepshrink.models.builders`). A model saved without info (``save_model(path, model)``:
the user's own class) has ``"arch": null`` and ``"input": null``; it records instead the
constructor arguments of every overridable layer (``"modules"``, see
:mod:`deepshrink.models.overrides`) and loads only into a fresh instance of that class
(``load_model(path, model=MyNet())``), which gets the resized layers, masks, quantizers,
activation quantizers and weights of the saved model.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from deepshrink.errors import UserError
from deepshrink.files import atomic_path
from deepshrink.models.attach import (describe_hooked_submodules, describe_parametrizations,
                                      restore_hooked_submodules, restore_parametrizations)
from deepshrink.models.builders import check_allow_list
from deepshrink.models.overrides import apply_differing, describe_all
from deepshrink.models.registry import ArchSpec, build_model, resolve_spec

FORMAT = "deepshrink-model"
VERSION = 1
METADATA_KEY = "deepshrink"
DSZ_METADATA_KEY = "deepshrink-dsz"  # a .dsz file (deepshrink.codec.dsz), which load_model opens too
ACTIVATION_QUANTIZER = "activation-quantizer"  # the hooked-submodule kind in "activation_quantizers"


# The most values one input image of a model file may have (3 x 2048 x 2048 fits): commands
# allocate batches of this shape, so a hostile file must not choose it freely.
MAX_INPUT_ELEMENTS = 1 << 24


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
        if len(shape) != 3 or min(shape) < 1 or shape[0] * shape[1] * shape[2] > MAX_INPUT_ELEMENTS:
            raise ValueError(f"input shape must be (C, H, W) of positive sizes, at most {MAX_INPUT_ELEMENTS} "
                             f"values, got {list(shape)}")
        mean, std = tuple(map(float, data["mean"])), tuple(map(float, data["std"]))
        if len(mean) != shape[0] or len(std) != shape[0]:
            raise ValueError(f"input mean and std need one value per channel ({shape[0]})")
        return cls(shape, mean, std)


class ModelPath(os.PathLike):
    """A model file's path that carries the builder packages the user allowed for it
    (``--allow-builder``), so jobs that take a path pass the permission to :func:`load_model`
    unchanged. ``str()`` and ``os.fspath()`` give the path."""

    def __init__(self, path: str | os.PathLike, allow_builders=()):
        self.path = os.fspath(path)
        self.allow_builders = check_allow_list(allow_builders) + allowed_by(path)

    def __fspath__(self) -> str:
        return self.path

    def __str__(self) -> str:
        return self.path

    def __repr__(self) -> str:
        return f"ModelPath({self.path!r}, allow_builders={self.allow_builders!r})"


def allowed_by(path: Any) -> tuple[str, ...]:
    """The builder packages a :class:`ModelPath` allows (nothing for a plain path)."""
    return tuple(getattr(path, "allow_builders", ()))


@dataclass
class ModelInfo:
    """Everything in a model file besides the tensors. ``arch`` (and with it ``input``) is None
    in a file saved without info: the model loads only into an instance of its class then, and
    ``modules`` records the shapes of its layers (filled by :func:`save_model`)."""

    arch: ArchSpec | None
    input: InputSpec | None
    classes: list[str] | None = None
    dataset: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    parametrizations: list[dict[str, Any]] = field(default_factory=list)  # filled by save_model
    activation_quantizers: list[dict[str, Any]] = field(default_factory=list)  # filled by save_model
    modules: dict[str, dict[str, Any]] = field(default_factory=dict)  # filled by save_model when arch is None

    def __post_init__(self) -> None:
        if self.arch is not None and self.input is None:
            raise UserError("ModelInfo.input is required with ModelInfo.arch (commands need the input shape)")

    def to_dict(self) -> dict[str, Any]:
        data = {
            "format": FORMAT,
            "version": VERSION,
            "arch": self.arch.to_dict() if self.arch is not None else None,
            "input": self.input.to_dict() if self.input is not None else None,
            "classes": self.classes,
            "dataset": self.dataset,
            "history": self.history,
            "parametrizations": self.parametrizations,
        }
        if self.activation_quantizers:
            data["activation_quantizers"] = self.activation_quantizers
        if self.modules:
            data["modules"] = self.modules
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelInfo":
        arch = ArchSpec.from_dict(data["arch"]) if data["arch"] is not None else None
        modules = data.get("modules") or {}
        if not isinstance(modules, dict) or not all(isinstance(v, dict) for v in modules.values()):
            raise ValueError("'modules' must map module names to objects")
        return cls(
            arch=arch,
            input=InputSpec.from_dict(data["input"]) if arch is not None or data.get("input") else None,
            classes=data.get("classes"),
            dataset=data.get("dataset"),
            history=list(data.get("history") or []),
            parametrizations=list(data.get("parametrizations") or []),
            activation_quantizers=list(data.get("activation_quantizers") or []),
            modules=dict(modules),
        )

    @property
    def name(self) -> str:
        """What to call the architecture in messages and reports (``"(instance)"`` without one)."""
        return self.arch.name if self.arch is not None else "(instance)"


def save_model(path: str | os.PathLike, model: nn.Module, info: ModelInfo | None = None,
               dtype: torch.dtype | None = None) -> Path:
    """Write ``model``'s state dict and ``info`` to ``path`` atomically; return the path.

    ``info.parametrizations`` and ``info.activation_quantizers`` are set from what is attached
    to the model. Without ``info`` (or with ``info.arch`` None) the file holds no architecture
    and records the model's layer shapes in ``info.modules``: it loads into a fresh instance of
    the model's class (``load_model(path, model=...)``). ``dtype`` (e.g. ``torch.float16``)
    stores floating tensors at that precision; loading casts them back to the model's float32.
    """
    info = info if info is not None else ModelInfo(None, None)
    info.parametrizations = describe_parametrizations(model)
    info.activation_quantizers = describe_hooked_submodules(model, ACTIVATION_QUANTIZER)
    info.modules = describe_all(model) if info.arch is None else {}
    tensors = {k: _stored(v, dtype) for k, v in model.state_dict().items()}
    metadata = {METADATA_KEY: json.dumps(info.to_dict())}
    path = Path(path)
    with atomic_path(path) as tmp:
        try:
            save_file(tensors, str(tmp), metadata=metadata)
        except SafetensorError as exc:  # safetensors reports the OSError (a full disk) as its own type
            raise UserError(f"cannot write {path}: {str(exc).rpartition('I/O error: ')[2]}") from None
    return path


def read_info(path: str | os.PathLike) -> ModelInfo:
    """Read only the metadata of a model file (cheap: tensors are not loaded)."""
    path = _existing(path)
    raw = _metadata(path).get(METADATA_KEY)
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
    except RecursionError:
        raise UserError(f"{path}: malformed deepshrink metadata (nested too deeply)") from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UserError(f"{path}: malformed deepshrink metadata ({exc})") from None


def load_model(path: str | os.PathLike, model: nn.Module | None = None, *, allow_builders=(),
               map_location: str = "cpu") -> tuple[nn.Module, ModelInfo]:
    """The model of a model file (or of a ``.dsz`` file) and its info; returns (model, info).

    Without ``model`` the module is rebuilt from the file's architecture: a zoo name, or a
    builder imported only from the ``allow_builders`` packages (and those ``path`` allows, a
    :class:`ModelPath`). With ``model``, a freshly built instance of the saved model's class,
    that instance receives the file's resized layers, masks, quantizers, activation quantizers
    and weights (in place) and is returned; a file saved without info loads only so. The
    model is returned in eval mode. Any problem with the file is a :class:`UserError`.
    """
    allow = check_allow_list(allow_builders) + allowed_by(path)
    metadata = _metadata(_existing(path))
    for key, reader in _READERS.items():
        if key in metadata and METADATA_KEY not in metadata:
            return reader(path, model, allow_builders=allow)
    if DSZ_METADATA_KEY in metadata:
        raise UserError(f"{path} is a .dsz file: import deepshrink.codec (or deepshrink) to open it with load_model")
    info = read_info(path)
    if model is None:
        check_shapes_on_meta(info, allow, _tensor_shapes(_existing(path)), str(path))
    model = prepared_model(info, model, allow, str(path))
    restore_parametrizations(model, info.parametrizations)
    if info.activation_quantizers:
        restore_hooked_submodules(model, ACTIVATION_QUANTIZER, info.activation_quantizers)
    try:
        state = load_file(str(path), device=map_location)
    except (SafetensorError, OSError) as exc:
        raise UserError(f"cannot read the tensors of {path}: {exc}") from None
    load_state_strict(model, state, source=str(path))
    return model.eval(), info


# Readers of other file kinds that load_model opens too, by their safetensors metadata key;
# filled by the packages that define them (deepshrink.codec: .dsz files) when imported.
_READERS: dict[str, Callable[..., tuple[nn.Module, "ModelInfo"]]] = {}


def register_file_reader(metadata_key: str, reader: Callable[..., tuple[nn.Module, "ModelInfo"]]) -> None:
    """Let :func:`load_model` open safetensors files whose metadata has ``metadata_key`` with
    ``reader(path, model, allow_builders=...) -> (model, info)``."""
    _READERS[metadata_key] = reader


def prepared_model(info: ModelInfo, model: nn.Module | None, allow_builders=(), source: str = "the file") -> nn.Module:
    """The module a file's tensors load into: built from ``info.arch`` (its builder resolved in
    place from ``allow_builders``), or the given fresh instance ``model`` with the file's
    resized layers (``info.modules``, ``info.arch.overrides``) applied where it differs."""
    if model is None:
        if info.arch is None:
            raise UserError(f"{source} holds no architecture (saved with info=None): load it into a fresh "
                            "instance of the saved model's class, load_model(path, model=...)")
        info.arch = resolve_spec(info.arch, allow_builders, source)
        return build_model(info.arch, allow_builders)  # a wrapper (early exits) passes it to its backbone
    if not isinstance(model, nn.Module):
        raise UserError(f"load_model(model=...) takes a torch.nn.Module, got {type(model).__name__}")
    apply_differing(model, info.modules)
    if info.arch is not None and info.arch.overrides:
        apply_differing(model, info.arch.overrides)
    return model


def check_shapes_on_meta(info: ModelInfo, allow_builders, shapes: dict[str, tuple[int, ...]], source: str) -> None:
    """Build ``info``'s architecture on the meta device (no memory) with its parametrizations and
    refuse the file unless it holds every tensor that needs, of that shape (``shapes``), before the
    real build allocates anything: a few-KB file cannot ask for a 10^9-class classifier."""
    if info.arch is None:
        return
    info.arch = resolve_spec(info.arch, allow_builders, source)
    try:
        with torch.device("meta"):
            skeleton = build_model(info.arch, allow_builders)
            restore_parametrizations(skeleton, info.parametrizations)
    except UserError:
        raise
    except Exception:  # noqa: BLE001 - a builder that cannot run on the meta device: checked after building
        return
    _compare_shapes({k: tuple(t.shape) for k, t in skeleton.state_dict().items()}, shapes, source)


def _compare_shapes(expected: dict[str, tuple[int, ...]], found: dict[str, tuple[int, ...]], source: str) -> None:
    """:class:`UserError` on the first tensor of ``expected`` missing from ``found`` or of another shape."""
    missing = [k for k in expected if k not in found]
    if missing:
        raise UserError(f"{source} does not fit its architecture: missing {_few(missing)}")
    for key, shape in expected.items():
        if tuple(found[key]) != tuple(shape):
            raise UserError(f"{source}: tensor {key} has shape {tuple(found[key])}, the architecture needs {tuple(shape)}")


def _tensor_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """The shape of every tensor in the safetensors file at ``path``, from its header (no data read)."""
    with open(path, "rb") as handle:
        header = _read_safetensors_header(handle, path)
    try:
        return {k: tuple(int(n) for n in v["shape"]) for k, v in header.items() if k != "__metadata__"}
    except (TypeError, KeyError, ValueError, AttributeError):
        raise UserError(f"{path} is not a model file (unreadable safetensors header)") from None


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


def _metadata(path: Path) -> dict[str, Any]:
    """The ``__metadata__`` of the safetensors file at ``path`` (empty when it has none)."""
    try:
        with open(path, "rb") as handle:
            header = _read_safetensors_header(handle, path)
    except OSError as exc:
        raise UserError(f"cannot read model file {path}: {exc.strerror}") from None
    metadata = header.get("__metadata__")
    return metadata if isinstance(metadata, dict) else {}


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
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise UserError(f"{path} is not a model file (unreadable safetensors header)") from None
    if not isinstance(header, dict):
        raise UserError(f"{path} is not a model file (unreadable safetensors header)")
    return header
