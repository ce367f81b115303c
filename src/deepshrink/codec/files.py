"""Model files <-> ``.dsz`` files."""

from __future__ import annotations

import os
from pathlib import Path

from torch import nn

from deepshrink.codec.dsz import read_dsz, write_dsz
from deepshrink.codec.model import EncodedModel, decode_model, encode_model
from deepshrink.models import ModelInfo, load_model, save_model


def save_dsz(path: str | os.PathLike, model: nn.Module, info: ModelInfo, *,
             float_dtype: str = "float32", bn_affine: bool = False) -> EncodedModel:
    """Encode ``model`` and write it to ``path`` (atomically); returns the encoding. Options as
    :func:`~deepshrink.codec.model.encode_model`."""
    encoded = encode_model(model, info, float_dtype=float_dtype, bn_affine=bn_affine)
    write_dsz(path, encoded)
    return encoded


def load_dsz(path: str | os.PathLike) -> tuple[nn.Module, ModelInfo]:
    """The plain model (eval mode) and its info from the ``.dsz`` file at ``path``."""
    return decode_model(read_dsz(path), str(path))


def encode_file(model_file: str | os.PathLike, out: str | os.PathLike, *,
                float_dtype: str = "float32", bn_affine: bool = False) -> EncodedModel:
    """Encode the model file ``model_file`` into the ``.dsz`` file ``out``."""
    model, info = load_model(model_file)
    return save_dsz(out, model, info, float_dtype=float_dtype, bn_affine=bn_affine)


def decode_file(dsz_file: str | os.PathLike, out: str | os.PathLike) -> tuple[ModelInfo, Path]:
    """Decode ``dsz_file`` into the plain model file ``out``; returns (its info, the path)."""
    model, info = load_dsz(dsz_file)
    return info, save_model(out, model, info)
