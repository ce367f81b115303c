"""Import the pretrained CIFAR ResNets of akamaster/pytorch_resnet_cifar10.

Those checkpoints are ``torch.save`` dicts ``{'best_prec1': float, 'state_dict': ...}`` from a
``DataParallel`` model (keys prefixed ``module.``), trained on inputs scaled to [0, 1] and then
normalised with :data:`PRETRAINED_MEAN` / :data:`PRETRAINED_STD`. Files are always read with
``weights_only=True``, so a checkpoint can never run code.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from deepshrink.errors import UserError
from deepshrink.models.registry import ArchSpec, build_model, get_entry, make_spec, model_names

__all__ = ["PRETRAINED_MEAN", "PRETRAINED_STD", "import_pretrained", "load_pretrained_state"]

PRETRAINED_MEAN = (0.485, 0.456, 0.406)
PRETRAINED_STD = (0.229, 0.224, 0.225)

_SHOWN = 3  # key names listed per kind of mismatch


def load_pretrained_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint (a dict with ``'state_dict'`` or a bare state dict), with any
    ``module.`` prefix stripped. Raises :class:`UserError` if the file is missing, is not a
    checkpoint, or needs more than plain tensors and containers to unpickle."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"checkpoint {path} does not exist")
    if not path.is_file():
        raise UserError(f"checkpoint {path} is not a file")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many types on foreign or corrupt files
        refused = re.search(r"GLOBAL (\S+)", str(exc))
        if refused:
            raise UserError(
                f"{path} is not a plain weights checkpoint (refused to unpickle {refused.group(1)})"
            ) from None
        raise UserError(f"cannot read {path}: not a PyTorch checkpoint ({type(exc).__name__})") from None
    if isinstance(data, Mapping) and "state_dict" in data:
        data = data["state_dict"]
    if not (
        isinstance(data, Mapping)
        and data
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in data.items())
    ):
        raise UserError(f"{path} is not a checkpoint: expected a state dict of named tensors")
    _check_views(path, data)
    return {key.removeprefix("module."): value for key, value in data.items()}


def _check_views(path: Path, state: Mapping[str, torch.Tensor]) -> None:
    """Refuse, before anything is materialised, a tensor that is a zero-stride or overlapping view
    or reaches past its storage, and tensors that together hold more bytes than the file: a few
    bytes on disk must not become gigabytes at ``.contiguous()``, ``copy_`` or ``load_state_dict``."""
    total = 0
    for key, tensor in state.items():
        if not _is_plain_view(tensor):
            raise UserError(
                f"{path}: tensor {key} of shape {tuple(tensor.shape)} is a zero-stride or overlapping "
                "view of fewer bytes than it claims; refused"
            )
        total += tensor.numel() * tensor.element_size()
    size = path.stat().st_size
    if total > size:
        raise UserError(f"{path}: its tensors hold {total} bytes, more than the file's {size}; refused")


def _is_plain_view(tensor: torch.Tensor) -> bool:
    """Whether ``tensor``'s elements are distinct storage elements that lie inside its storage."""
    if tensor.numel() == 0:
        return True
    dims = sorted((stride, size) for size, stride in zip(tensor.shape, tensor.stride()) if size > 1)
    span = 1  # elements a dimension must step over not to overlap the smaller ones
    for stride, size in dims:
        if stride < span:
            return False
        span = stride * size
    last = tensor.storage_offset() + sum((size - 1) * stride for stride, size in dims)
    needed = max(last + 1, tensor.numel()) * tensor.element_size()
    return tensor.storage_offset() >= 0 and tensor.untyped_storage().nbytes() >= needed


def cifar_resnets() -> list[str]:
    """The zoo names of the CIFAR ResNets (the architectures the published checkpoints fit)."""
    return [name for name in model_names() if get_entry(name).builder.__module__.endswith(".resnet_cifar")]


def import_pretrained(model_name: str, checkpoint_path: str | Path) -> tuple[nn.Module, ArchSpec]:
    """Build zoo model ``model_name`` (a CIFAR ResNet) for 3x32x32 inputs and load the checkpoint
    into it with strict key and shape matching; ``num_classes`` comes from ``linear.weight``.
    Returns the model in eval mode and its spec; a checkpoint that does not fit is a UserError."""
    resnets = cifar_resnets()
    if model_name not in resnets:
        raise UserError(f"pretrained import supports {', '.join(resnets)}; got {model_name!r}")
    state = load_pretrained_state(checkpoint_path)
    head = state.get("linear.weight")
    if head is None or head.dim() != 2:
        raise UserError(f"{checkpoint_path} is not a CIFAR ResNet checkpoint: no 2-D linear.weight")
    spec = make_spec(model_name, num_classes=head.shape[0], in_channels=3, image_size=32)
    model = build_model(spec)
    expected = model.state_dict()
    for key in expected:
        prefix = key.removesuffix("num_batches_tracked")
        if prefix != key and key not in state and prefix + "running_mean" in state:
            state[key] = torch.zeros((), dtype=torch.long)
    _check_fit(model_name, checkpoint_path, state, expected)
    model.load_state_dict(state, strict=True)
    return model.eval(), spec


def _check_fit(
    model_name: str, path: str | Path, state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]
) -> None:
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    if missing or unexpected:
        parts = [f"missing {_some(missing)}"] if missing else []
        parts += [f"unexpected {_some(unexpected)}"] if unexpected else []
        found, wanted = _blocks(state), _blocks(expected)
        if found != wanted:
            depth = f"resnet{6 * found + 2}"
            parts.insert(0, f"checkpoint has {found} residual blocks per stage ({depth}), not {wanted}")
        raise UserError(f"checkpoint {path} does not fit {model_name}: {'; '.join(parts)}")
    for key, tensor in expected.items():
        if state[key].shape != tensor.shape:
            raise UserError(
                f"checkpoint {path} does not fit {model_name}: {key} has shape "
                f"{tuple(state[key].shape)} in the checkpoint but {tuple(tensor.shape)} in the model"
            )


def _blocks(keys) -> int:
    """Residual blocks in the first stage of a CIFAR ResNet state dict."""
    return len({match.group(1) for key in keys if (match := re.match(r"layer1\.(\d+)\.", key))})


def _some(keys: list[str]) -> str:
    more = f" and {len(keys) - _SHOWN} more" if len(keys) > _SHOWN else ""
    return ", ".join(keys[:_SHOWN]) + more
