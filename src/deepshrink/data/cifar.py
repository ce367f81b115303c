"""CIFAR-10 reader: npz files, the pickled python batches (read safely) or the binary batches."""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import torch

from deepshrink.data.dataset import Augment, ImageDataset, check_split
from deepshrink.errors import UserError

try:
    from numpy._core.multiarray import _reconstruct
except ImportError:  # numpy < 2
    from numpy.core.multiarray import _reconstruct

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
LAYOUT = (
    "expected cifar10_train.npz and cifar10_test.npz, a cifar-10-batches-py folder "
    "(data_batch_1..5, test_batch) or a cifar-10-batches-bin folder (data_batch_1..5.bin, test_batch.bin)"
)
_BATCHES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
_PIXELS = 3 * 32 * 32


def load_cifar10(data_dir: str | os.PathLike, split: str) -> ImageDataset:
    """CIFAR-10 ``split`` ("train": 50,000 images, "test": 10,000) from ``data_dir``.

    ``data_dir`` holds ``cifar10_{split}.npz`` (``x`` uint8 (N, 32, 32, 3) RGB, ``y`` int (N,)),
    or is (or contains) ``cifar-10-batches-py`` or ``cifar-10-batches-bin``. Images come back as
    uint8 (N, 3, 32, 32) in the original CIFAR-10 order.
    """
    check_split("cifar10", split)
    root = Path(data_dir)
    images, labels = _read(root, split)
    return ImageDataset(
        name="cifar10",
        images=torch.from_numpy(images),
        labels=torch.from_numpy(labels),
        classes=CIFAR10_CLASSES,
        mean=CIFAR10_MEAN,
        std=CIFAR10_STD,
        augment=Augment(crop_padding=4, hflip=True),
    )


def _read(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, 3, 32, 32), labels int64 (N,)) from the first layout found in ``root``."""
    if not root.is_dir():
        raise UserError(f"cifar10: no folder {root}: {LAYOUT}")
    npz = root / f"cifar10_{split}.npz"
    if npz.is_file():
        return _read_npz(npz)
    layouts = (
        (root, "", _read_py_batch),
        (root / "cifar-10-batches-py", "", _read_py_batch),
        (root, ".bin", _read_bin_batch),
        (root / "cifar-10-batches-bin", ".bin", _read_bin_batch),
    )
    for folder, suffix, reader in layouts:
        paths = [folder / (name + suffix) for name in _BATCHES[split]]
        missing = [path.name for path in paths if not path.is_file()]
        if not missing:
            parts = [reader(path) for path in paths]
            return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        if len(missing) < len(paths):
            raise UserError(f"cifar10: {folder} lacks {', '.join(missing)}: {LAYOUT}")
    raise UserError(f"cifar10: no CIFAR-10 {split} set found in {root}: {LAYOUT}")


def _checked(path: Path, images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if labels.ndim != 1 or labels.dtype.kind not in "iu" or len(labels) != len(images):
        raise UserError(
            f"cifar10: {path}: expected {len(images)} integer labels, got {labels.dtype} {labels.shape}"
        )
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise UserError(f"cifar10: {path}: labels must lie in 0..9, got {labels.min()}..{labels.max()}")
    return images, labels.astype(np.int64)


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            if not {"x", "y"} <= set(archive.files):
                found = sorted(archive.files)
                raise UserError(f"cifar10: {path}: expected arrays 'x' and 'y', found {found}")
            x, y = archive["x"], archive["y"]
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise UserError(f"cifar10: {path} is not a readable npz file: {error}") from error
    if x.dtype != np.uint8 or x.shape[1:] != (32, 32, 3):
        raise UserError(f"cifar10: {path}: 'x' must be uint8 (N, 32, 32, 3), got {x.dtype} {x.shape}")
    return _checked(path, np.ascontiguousarray(x.transpose(0, 3, 1, 2)), y)


def _latin1_bytes(text: str, encoding: str) -> bytes:
    """How Python 3 pickles bytes with protocol 2: ``_codecs.encode(text, "latin1")``."""
    if encoding not in ("latin1", "latin-1"):
        raise UserError(
            f"refusing a pickled _codecs.encode with encoding {encoding!r}: a CIFAR-10 batch only uses latin1"
        )
    return text.encode("latin1")


# The only globals a pickled CIFAR-10 batch refers to: numpy's array reconstruction, plus the
# latin1 bytes encoding that Python 3 writes for bytes at pickle protocol 2.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_bytes,
}


class _BatchUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals in ``_ALLOWED``; anything else is a UserError."""

    def __init__(self, file, name: str) -> None:
        super().__init__(file, encoding="bytes")
        self._name = name

    def find_class(self, module: str, name: str):
        allowed = _ALLOWED.get((module, name))
        if allowed is None:
            raise UserError(
                f"refusing to load {self._name}: it references {module}.{name}, "
                "which a CIFAR-10 batch never contains"
            )
        return allowed


def _read_py_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as handle:
            batch = _BatchUnpickler(handle, path.name).load()
    except UserError:
        raise
    except Exception as error:  # a malformed pickle can fail in many ways; none of them is a bug here
        raise UserError(f"cifar10: {path} is not a readable CIFAR-10 python batch: {error!r}") from error
    data = batch.get(b"data") if isinstance(batch, dict) else None
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.shape[1:] != (_PIXELS,):
        raise UserError(f"cifar10: {path}: expected a dict whose b'data' is a uint8 (N, 3072) array")
    labels = batch.get(b"labels")
    if not isinstance(labels, (list, np.ndarray)):
        raise UserError(f"cifar10: {path}: expected a dict whose b'labels' is a list of ints")
    return _checked(path, data.reshape(-1, 3, 32, 32), np.asarray(labels))


def _read_bin_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % (_PIXELS + 1):
        raise UserError(
            f"cifar10: {path} has {raw.size} bytes, "
            "not a positive multiple of 3073 (1 label byte + 3072 pixels)"
        )
    records = raw.reshape(-1, _PIXELS + 1)
    return _checked(path, records[:, 1:].reshape(-1, 3, 32, 32), records[:, 0])
