"""MNIST reader for the standard idx files (plain or gzip-compressed)."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import torch

from deepshrink.data.dataset import Augment, ImageDataset, check_split
from deepshrink.errors import UserError

CLASSES = tuple(str(d) for d in range(10))
MEAN = (0.1307,)
STD = (0.3081,)
LAYOUT = (
    "expected train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and "
    "t10k-labels-idx1-ubyte (each optionally .gz; '.idx3-ubyte' spellings also accepted)"
)
_IMAGES_MAGIC, _LABELS_MAGIC = 2051, 2049  # unsigned-byte data with 3 and 1 dimensions


def load_mnist(data_dir: str | os.PathLike, split: str) -> ImageDataset:
    """MNIST ``split`` from the idx files in ``data_dir``: uint8 (N, 1, H, W) images (28 x 28 for
    real MNIST), labels 0..9. "train" reads ``train-*``, "test" reads ``t10k-*``."""
    check_split("mnist", split)
    root = Path(data_dir)
    if not root.is_dir():
        raise UserError(f"mnist: no folder {root}: {LAYOUT}")
    prefix = "train" if split == "train" else "t10k"
    images_path = _find(root, f"{prefix}-images-idx3-ubyte")
    labels_path = _find(root, f"{prefix}-labels-idx1-ubyte")
    images = _read_idx(images_path, _IMAGES_MAGIC)
    labels = _read_idx(labels_path, _LABELS_MAGIC)
    if len(labels) != len(images):
        raise UserError(
            f"mnist: {len(images)} images in {images_path.name} but {len(labels)} labels in {labels_path.name}"
        )
    if len(labels) and labels.max() > 9:
        raise UserError(f"mnist: {labels_path}: labels must lie in 0..9, got up to {labels.max()}")
    return ImageDataset(
        name="mnist",
        images=torch.from_numpy(images).unsqueeze(1),
        labels=torch.from_numpy(labels.astype(np.int64)),
        classes=CLASSES,
        mean=MEAN,
        std=STD,
        augment=Augment(crop_padding=2, hflip=False),
    )


def _find(root: Path, name: str) -> Path:
    """The file ``name`` in ``root``, also as ``name.gz`` or with its ``-idx`` spelt ``.idx``."""
    dotted = name.replace("-idx", ".idx")
    for candidate in (name, name + ".gz", dotted, dotted + ".gz"):
        if (root / candidate).is_file():
            return root / candidate
    raise UserError(f"mnist: {root} has no {name}: {LAYOUT}")


def _read_idx(path: Path, magic: int) -> np.ndarray:
    """The uint8 array in the idx file ``path``, shaped by its header; checks magic and size."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as error:
        raise UserError(f"mnist: cannot read {path}: {error}") from error
    ndim = magic & 0xFF
    header = 4 * (1 + ndim)
    if len(raw) < header or int(np.frombuffer(raw, ">u4", count=1)[0]) != magic:
        raise UserError(f"mnist: {path} is not an idx file with magic number {magic}")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    size = int(np.prod(dims))
    if len(raw) - header != size:
        raise UserError(f"mnist: {path}: header says {dims} ({size} bytes) but holds {len(raw) - header}")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims).copy()
