"""Encoding a whole model: its weights through :mod:`deepshrink.codec.layer`, everything else raw.

The state is walked in the order of the plain architecture's ``state_dict``. A weight with a
quantizer anywhere on its parametrization chain (a
:class:`~deepshrink.models.attach.QuantizedRepresentation`: ``quantized_representation(original)
-> (codebook (G, K), indices)``) is encoded from that codebook; every other weight (a tensor
with 2 or more dimensions, or any parametrized tensor) from its effective float values, dense
or sparse. All remaining tensors (BatchNorm parameters and running statistics, biases) are
concatenated raw into ``other``: floating ones as ``float_dtype``, others
(``num_batches_tracked``) in their own type.

``float_dtype="float32"`` (the default) keeps the decoded model's outputs bit-identical to the
encoded model's; ``"float16"`` halves the float bytes but rounds BatchNorm parameters, biases
and unquantized weights, and codebooks (file version 3 on), so outputs change slightly.
``bn_affine`` stores each BatchNorm as its inference scale and shift
(:mod:`deepshrink.codec.batchnorm`): half its bytes, outputs equal within float rounding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from deepshrink.codec.batchnorm import (affine_batchnorms, inference_affine, neutral_statistics, state_key,
                                        statistic_keys)
from deepshrink.codec.layer import FLOAT_DTYPES, EncodedTensor, checked_values, encode_float, encode_quantized
from deepshrink.errors import UserError
from deepshrink.models import ModelInfo, build_model
from deepshrink.models.attach import baked_copy, detach_hooked_submodules, quantized_representation_of
from deepshrink.models.file import ACTIVATION_QUANTIZER, load_state_strict, prepared_model
from deepshrink.models.overrides import describe_all


@dataclass(frozen=True)
class EncodedModel:
    """A model as stored in a ``.dsz`` file."""

    info: ModelInfo                  # no parametrizations: the decoded model is plain
    float_dtype: str                 # storage of the floats in ``other`` and of float weights
    layers: list[EncodedTensor]      # coded weights
    other: bytes                     # every other state tensor, in state-dict order
    bn_affine: bool = False          # BatchNorms stored as scale and shift, without statistics


def encode_model(model: nn.Module, info: ModelInfo | None = None, *, float_dtype: str = "float32",
                 bn_affine: bool = False) -> EncodedModel:
    """Encode ``model`` (built from ``info.arch``, optionally pruned/quantized through
    parametrizations); ``bn_affine``: BatchNorms as their inference scale and shift. Without
    ``info`` (or ``info.arch``) the file records the model's layer shapes instead of an
    architecture and decodes into a fresh instance of its class."""
    if float_dtype not in FLOAT_DTYPES:
        raise UserError(f"float storage must be one of {', '.join(FLOAT_DTYPES)}, got {float_dtype!r}")
    info = info if info is not None else ModelInfo(None, None)
    plain = _plain_state(model, info)
    affine = _affine_parameters(model) if bn_affine else {}
    skipped = set(statistic_keys(model)) if bn_affine else set()  # not stored: neutral on decoding
    layers, other = [], []
    with torch.no_grad():
        for key, reference in plain.items():
            module_name, _, attr = key.rpartition(".")
            module = model.get_submodule(module_name)
            if key in skipped:
                continue
            tensor = affine[key] if key in affine else getattr(module, attr).detach().cpu()
            if tensor.shape != reference.shape:
                raise UserError(f"tensor {key} has shape {tuple(tensor.shape)}, "
                                f"architecture {info.name} needs {tuple(reference.shape)}")
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise UserError(f"cannot encode: tensor {key} holds non-finite values (NaN or inf)")
            if parametrize.is_parametrized(module, attr) or (tensor.is_floating_point() and tensor.dim() >= 2):
                layers.append(_encode_weight(key, module, attr, tensor, float_dtype))
            else:
                other.append(_raw_bytes(key, tensor, float_dtype))
    stored = ModelInfo.from_dict(info.to_dict())
    stored.arch = info.arch  # keeps a builder the caller allowed (resolved), so the encoding can be rebuilt
    stored.modules = describe_all(model) if info.arch is None else {}
    stored.parametrizations = []
    record = {"stage": "encode", "format": "dsz", "float_dtype": float_dtype, "bn_affine": bn_affine}
    if stored.activation_quantizers:  # the .dsz holds weights only: the decoded model is plain
        record["dropped_activation_quantizers"] = len(stored.activation_quantizers)
        stored.activation_quantizers = []
    stored.history.append(record)
    return EncodedModel(stored, float_dtype, layers, b"".join(other), bn_affine)


def decode_model(encoded: EncodedModel, source: str = "the .dsz file",
                 model: nn.Module | None = None) -> tuple[nn.Module, ModelInfo]:
    """Rebuild the plain model (eval mode) from ``encoded``, or fill ``model``, a fresh instance
    of the encoded model's class (needed when the file has no architecture); any inconsistency
    is a :class:`UserError`."""
    model = prepared_model(encoded.info, model, source=source)
    plain = model.state_dict()
    state: dict[str, torch.Tensor] = {}
    for layer in encoded.layers:
        if layer.key not in plain or layer.key in state:
            raise UserError(f"{source}: layer {layer.key!r} is unknown or repeated "
                            f"for {encoded.info.name}")
        if layer.shape != tuple(plain[layer.key].shape):
            raise UserError(f"{source}: layer {layer.key} has shape {layer.shape}, "
                            f"the architecture needs {tuple(plain[layer.key].shape)}")
        values = checked_values(layer, source)  # decoded once, when the file was read
        state[layer.key] = torch.tensor(values, dtype=plain[layer.key].dtype)
    state.update(other_state(encoded, model, source))
    load_state_strict(model, state, source=source)
    return model.eval(), encoded.info


def other_state(encoded: EncodedModel, model: nn.Module, source: str = "the .dsz file") -> dict[str, torch.Tensor]:
    """The tensors of ``model`` (the plain module the file decodes into) that are not coded
    layers: cut from ``encoded.other`` (sizes and finiteness checked), plus the neutral running
    statistics of affine BatchNorms; a :class:`UserError` when they do not fit."""
    neutral = _neutral_statistics(model) if encoded.bn_affine else {}
    coded = {layer.key for layer in encoded.layers}
    rest = {k: v for k, v in model.state_dict().items() if k not in coded and k not in neutral}
    return {**_split_other(encoded, rest, source), **neutral}


def _plain_state(model: nn.Module, info: ModelInfo) -> dict[str, torch.Tensor]:
    """The state dict of the plain model the file decodes into, in its order: a fresh build of a
    zoo architecture, else ``model`` itself without its parametrizations and activation quantizers
    (which keeps the order of every tensor that is not parametrized, the ``other`` tensors)."""
    if info.arch is not None and not info.arch.is_builder:
        return build_model(info.arch).state_dict()
    plain = detach_hooked_submodules(baked_copy(model), ACTIVATION_QUANTIZER)
    return plain.state_dict()


def _affine_parameters(model: nn.Module) -> dict[str, torch.Tensor]:
    """state key -> the scale (weight) or shift (bias) stored for each affine BatchNorm."""
    stored = {}
    for name, bn in affine_batchnorms(model).items():
        stored[state_key(name, "weight")], stored[state_key(name, "bias")] = inference_affine(bn)
    return stored


def _neutral_statistics(model: nn.Module) -> dict[str, torch.Tensor]:
    """state key -> value of every running statistic of ``model``'s affine BatchNorms."""
    return {state_key(name, stat): value for name, bn in affine_batchnorms(model).items()
            for stat, value in neutral_statistics(bn).items()}


def _encode_weight(key: str, module: nn.Module, attr: str, tensor: torch.Tensor, float_dtype: str) -> EncodedTensor:
    values = tensor.float().numpy()
    representation = _quantized_representation(module, attr)
    if representation is not None and not np.isfinite(representation[0]).all():
        raise UserError(f"cannot encode: the codebook of tensor {key} holds non-finite values (NaN or inf)")
    try:
        if representation is not None:
            return encode_quantized(key, *representation, values, float_dtype)
        return encode_float(key, values, float_dtype)
    except ValueError as exc:
        raise UserError(f"cannot store {exc}") from None


def _quantized_representation(module: nn.Module, attr: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(codebook (G, K), indices) of a weight with a quantizer on its chain (k-means, linear),
    else None."""
    representation = quantized_representation_of(module, attr)
    if representation is None:
        return None
    codebook, indices = representation
    return codebook.detach().cpu().float().numpy(), indices.detach().cpu().numpy()


def _storage(tensor: torch.Tensor, float_dtype: str) -> np.dtype:
    """Little-endian numpy type ``tensor`` is stored as."""
    if tensor.is_floating_point():
        return np.dtype(float_dtype).newbyteorder("<")
    return np.dtype(str(tensor.dtype).removeprefix("torch.")).newbyteorder("<")


def _raw_bytes(key: str, tensor: torch.Tensor, float_dtype: str) -> bytes:
    values = tensor.numpy()
    with np.errstate(over="ignore"):
        stored = values.astype(_storage(tensor, float_dtype))
    if tensor.is_floating_point() and not np.array_equal(np.isfinite(stored), np.isfinite(values)):
        raise UserError(f"cannot store {key}: a value is out of {float_dtype} range")
    return stored.tobytes()


def _split_other(encoded: EncodedModel, rest: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """Cut ``encoded.other`` into the tensors ``rest`` (key -> plain reference, in order)."""
    sizes = {key: math.prod(ref.shape) * _storage(ref, encoded.float_dtype).itemsize for key, ref in rest.items()}
    if sum(sizes.values()) != len(encoded.other):
        raise UserError(f"{source}: the other tensors take {len(encoded.other)} bytes, "
                        f"the architecture needs {sum(sizes.values())}")
    state, offset = {}, 0
    for key, ref in rest.items():
        dtype = _storage(ref, encoded.float_dtype)
        chunk = np.frombuffer(encoded.other, dtype=dtype, count=math.prod(ref.shape), offset=offset)
        if ref.is_floating_point() and not np.isfinite(chunk).all():
            raise UserError(f"{source}: tensor {key} holds non-finite values (NaN or inf)")
        state[key] = torch.from_numpy(chunk.astype(dtype.newbyteorder("="))).to(ref.dtype).reshape(ref.shape)
        offset += sizes[key]
    return state
