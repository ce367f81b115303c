"""Training checkpoints: written atomically, verified by a SHA-256 checksum, loaded with
``torch.load(weights_only=True)`` so a checkpoint file cannot run code.

Layout: ``MAGIC`` (8 bytes) + SHA-256 of the payload (32 bytes) + payload (``torch.save``
bytes of a dict of tensors and plain data).
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Any

import torch

from deepshrink.errors import UserError
from deepshrink.files import atomic_write_bytes

MAGIC = b"DSCKPT1\n"


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path``: either the complete new file lands or the old one stays."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    atomic_write_bytes(path, MAGIC + hashlib.sha256(payload).digest() + payload)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`; a :class:`UserError` if it is
    missing, truncated, corrupted or holds anything but tensors and plain data."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    data = path.read_bytes()
    if len(data) < len(MAGIC) + 32 or not data.startswith(MAGIC):
        raise UserError(f"{path} is not a deepshrink checkpoint")
    digest, payload = data[len(MAGIC):len(MAGIC) + 32], data[len(MAGIC) + 32:]
    if hashlib.sha256(payload).digest() != digest:
        raise UserError(f"{path} is corrupted (checksum mismatch)")
    try:
        return torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as exc:  # weights_only refusal or a damaged archive
        raise UserError(f"{path} could not be loaded safely: {str(exc).splitlines()[0]}") from None
