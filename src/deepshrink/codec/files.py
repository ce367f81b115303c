"""Model files <-> ``.dsz`` files; importing this module lets ``load_model`` open ``.dsz`` files."""

from __future__ import annotations

import os
from pathlib import Path

from torch import nn

from deepshrink.codec.dsz import METADATA_KEY, read_dsz, write_dsz
from deepshrink.codec.model import EncodedModel, decode_model, encode_model
from deepshrink.files import check_output
from deepshrink.models import ModelInfo, load_model, save_model
from deepshrink.models.file import register_file_reader


def save_dsz(path: str | os.PathLike, model: nn.Module, info: ModelInfo | None = None, *,
             float_dtype: str = "float32", bn_affine: bool = False) -> EncodedModel:
    """Encode ``model`` and write it to ``path`` (atomically); returns the encoding. Options as
    :func:`~deepshrink.codec.model.encode_model`. Without ``info`` the file holds no
    architecture: it decodes into a fresh instance of the model's class (:func:`load_dsz`)."""
    encoded = encode_model(model, info, float_dtype=float_dtype, bn_affine=bn_affine)
    write_dsz(path, encoded)
    return encoded


def load_dsz(path: str | os.PathLike, model: nn.Module | None = None, *,
             allow_builders=()) -> tuple[nn.Module, ModelInfo]:
    """The plain model (eval mode) and its info from the ``.dsz`` file at ``path``: rebuilt from
    its architecture (a builder only from the ``allow_builders`` packages), or ``model``, a
    fresh instance of the encoded model's class, filled in place (a file saved without info
    loads only so)."""
    encoded = read_dsz(path, model, allow_builders)
    return decode_model(encoded, str(path), model)


register_file_reader(METADATA_KEY, load_dsz)  # load_model opens .dsz files too


def encode_file(model_file: str | os.PathLike, out: str | os.PathLike, *,
                float_dtype: str = "float32", bn_affine: bool = False, allow_builders=()) -> EncodedModel:
    """Encode the model file ``model_file`` into the ``.dsz`` file ``out``."""
    check_output(out, [model_file])
    model, info = load_model(model_file, allow_builders=allow_builders)
    return save_dsz(out, model, info, float_dtype=float_dtype, bn_affine=bn_affine)


def decode_file(dsz_file: str | os.PathLike, out: str | os.PathLike, *,
                allow_builders=()) -> tuple[ModelInfo, Path]:
    """Decode ``dsz_file`` into the plain model file ``out``; returns (its info, the path)."""
    check_output(out, [dsz_file])
    model, info = load_dsz(dsz_file, allow_builders=allow_builders)
    return info, save_model(out, model, info)
