"""Your own images: an image-folder tree (one subfolder per class) as an :class:`ImageDataset`.

Two layouts: ``DIR/train/<class>/...`` beside ``DIR/val/<class>/...`` (or ``DIR/test/``), or
one tree ``DIR/<class>/...`` split per class by a seeded fraction. Every non-hidden file below a
class folder is an image; Pillow decodes it once (EXIF orientation applied, converted to RGB),
takes the centred square of side min(width, height) and resizes it to ``image_size`` (the
shorter side resized, then a centre crop). The uint8 arrays are cached (:mod:`folder_cache`)
under a key of the file list, sizes and mtimes, so the next load skips decoding.
"""

from __future__ import annotations

import hashlib
import os
import struct
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
import numpy as np
import torch
from PIL import Image, ImageOps
from tqdm import tqdm

from deepshrink.data import folder_cache
from deepshrink.data.dataset import Augment, ImageDataset, check_split
from deepshrink.errors import ConfigError, UserError, is_int, is_number

PREFIX = "folder:"
TEST_DIRS = ("val", "test")  # the test split of a train/ layout: val/ when present, else test/
_BAD_IMAGE = (OSError, ValueError, SyntaxError, EOFError, struct.error, Image.DecompressionBombError)


@dataclass(frozen=True)
class FolderSource:
    """An image-folder dataset and how to read it.

    ``root``: the tree. ``image_size``: side of the square images. ``cache_dir``: where the
    decoded arrays are kept (None: ``$XDG_CACHE_HOME/deepshrink`` or ``~/.cache/deepshrink``).
    ``skip_bad_images``: leave out files Pillow cannot read (counted on stderr) instead of
    failing. ``test_fraction`` and ``split_seed``: how a single tree (no ``train/``) is split.
    """

    root: Path
    image_size: int = 32
    cache_dir: Path | None = None
    skip_bad_images: bool = False
    test_fraction: float = 0.2
    split_seed: int = 0

    def __post_init__(self) -> None:
        if not is_int(self.image_size) or self.image_size < 1:
            raise ConfigError("FolderSource", "image_size", f"must be an integer >= 1, got {self.image_size!r}")
        if not is_number(self.test_fraction) or not 0 < self.test_fraction < 1:
            raise ConfigError("FolderSource", "test_fraction", f"must be in (0, 1), got {self.test_fraction!r}")
        if not is_int(self.split_seed) or self.split_seed < 0:
            raise ConfigError("FolderSource", "split_seed", f"must be an integer >= 0, got {self.split_seed!r}")
        object.__setattr__(self, "root", Path(self.root).expanduser())
        if self.cache_dir is not None:
            object.__setattr__(self, "cache_dir", Path(self.cache_dir).expanduser())

    @property
    def name(self) -> str:
        """The dataset's name: ``folder:`` and the tree's folder name."""
        return PREFIX + self.root.resolve().name


def is_folder_name(name: object) -> bool:
    """Whether ``name`` is a ``folder:DIR`` dataset name (or already a :class:`FolderSource`)."""
    return isinstance(name, FolderSource) or (isinstance(name, str) and name.startswith(PREFIX))


def folder_source(name: str | FolderSource) -> FolderSource:
    """``folder:DIR`` as a :class:`FolderSource` with default settings (a source stays as it is)."""
    if isinstance(name, FolderSource):
        return name
    root = name[len(PREFIX):]
    if not root:
        raise UserError(f"{name!r}: give the folder, as in folder:path/to/images")
    return FolderSource(Path(root))


@dataclass(frozen=True)
class Entry:
    """One image file: its path relative to the tree's root and its class index."""

    path: str
    label: int


def load_folder(source: FolderSource, split: str,
                progress: bool | None = None) -> ImageDataset:
    """The ``split`` ("train" or "test") of an image-folder tree, decoded or from the cache.

    ``progress``: a bar while decoding (None: only when stderr is a terminal).
    """
    check_split(source.name, split)
    base, classes, entries = scan(source, split)
    cached = folder_cache.read(source, split, base, classes, entries)
    if cached is None:
        cached = _decode_all(source, split, base, classes, entries, progress)
    _check_skipped(source, split, base, classes, cached.skipped, cached.labels)
    return ImageDataset(name=source.name, images=torch.from_numpy(cached.images),
                        labels=torch.from_numpy(cached.labels), classes=classes, mean=cached.mean, std=cached.std,
                        augment=Augment(crop_padding=max(1, source.image_size // 8), hflip=True))


def scan(source: FolderSource, split: str) -> tuple[Path, tuple[str, ...], list[Entry]]:
    """The folder the entries are relative to, the class names (sorted) and the split's files
    in a fixed shuffled order (so that the first N images mix the classes)."""
    root = source.root
    if not root.is_dir():
        raise UserError(f"{root}: no such folder (an image folder holds one subfolder per class)")
    train_dir = root / "train"
    if not train_dir.is_dir():
        classes, files = _class_files(root)
        test = _test_set(files, source.test_fraction, source.split_seed)
        entries = [e for e in _entries(files) if (e.path in test) == (split == "test")]
        return root, classes, _shuffled(entries, source.split_seed)
    test_dir = next((root / name for name in TEST_DIRS if (root / name).is_dir()), None)
    if test_dir is None:
        raise UserError(f"{root} has train/ but no val/ or test/ beside it")
    train_classes, train_files = _class_files(train_dir)
    test_classes, test_files = _class_files(test_dir)
    if train_classes != test_classes:
        raise UserError(f"{root}: train/ and {test_dir.name}/ have different classes: "
                        f"{_difference(train_classes, test_classes, 'train/', test_dir.name + '/')}")
    base, files = (train_dir, train_files) if split == "train" else (test_dir, test_files)
    return base, train_classes, _shuffled(_entries(files), source.split_seed)


def _class_files(root: Path) -> tuple[tuple[str, ...], dict[str, list[str]]]:
    """The class folders below ``root`` and each one's files (relative to ``root``, sorted)."""
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        found = f"only the class {classes[0]!r}" if classes else "no class subfolders"
        raise UserError(f"{root}: found {found}; an image folder needs one subfolder per class, at least 2")
    files = {name: _files_below(root, name) for name in classes}
    empty = [name for name in classes if not files[name]]
    if empty:
        raise UserError(f"{root}: empty class folder{'s' if len(empty) > 1 else ''}: {', '.join(empty)}")
    return tuple(classes), files


def _files_below(root: Path, name: str) -> list[str]:
    found = []
    for folder, subfolders, names in os.walk(root / name):
        subfolders[:] = [s for s in subfolders if not s.startswith(".")]
        rel = Path(folder).relative_to(root)
        found += [(rel / n).as_posix() for n in names if not n.startswith(".")]
    return sorted(found)


def _entries(files: dict[str, list[str]]) -> list[Entry]:
    return [Entry(path, label) for label, name in enumerate(files) for path in files[name]]


def _digest(seed: int, salt: str, path: str) -> bytes:
    return hashlib.sha256(f"{seed}:{salt}:{path}".encode()).digest()


def _test_set(files: dict[str, list[str]], fraction: float, seed: int) -> set[str]:
    """Per class, the ``round(n * fraction)`` files (at least 1, at most n - 1) that rank first
    by a seeded hash of their path: adding images moves at most one image of a class."""
    test = set()
    for paths in files.values():
        count = min(max(round(len(paths) * fraction), 1), len(paths) - 1)
        test.update(sorted(paths, key=lambda p: _digest(seed, "split", p))[:count])
    return test


def _shuffled(entries: list[Entry], seed: int) -> list[Entry]:
    return sorted(entries, key=lambda e: _digest(seed, "order", e.path))


def _difference(a: tuple[str, ...], b: tuple[str, ...], a_name: str, b_name: str) -> str:
    parts = [f"only in {where}: {', '.join(sorted(set(x) - set(y)))}"
             for x, y, where in ((a, b, a_name), (b, a, b_name)) if set(x) - set(y)]
    return "; ".join(parts)


def decode_image(path: Path, size: int) -> np.ndarray:
    """One image file as uint8 (3, size, size): EXIF orientation applied, RGB, the centred
    square cropped, then resized to ``size`` (bilinear, antialiased; no pixel outside the
    square contributes)."""
    with Image.open(path) as opened:
        opened.draft("RGB", (size, size))  # JPEG: decode at a reduced scale, still >= size
        image = _rgb(ImageOps.exif_transpose(opened))
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    image = image.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1)


def _rgb(image: Image.Image) -> Image.Image:
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return image if image.mode == "RGB" else image.convert("RGB")


def _try_decode(path: Path, size: int) -> np.ndarray | str:
    """The decoded image, or why it could not be read."""
    try:
        return decode_image(path, size)
    except _BAD_IMAGE as exc:
        return f"{type(exc).__name__}: {exc}"


def _decode_all(source: FolderSource, split: str, base: Path, classes: tuple[str, ...], entries: list[Entry],
                progress: bool | None) -> folder_cache.Decoded:
    """Decode every entry (threads; Pillow releases the GIL), measure mean and std, write the cache."""
    size = source.image_size
    images = np.empty((len(entries), 3, size, size), dtype=np.uint8)
    labels, skipped = [], []
    show = sys.stderr.isatty() if progress is None else progress
    pool = ThreadPoolExecutor(max(1, min(8, os.cpu_count() or 1)))
    try:
        results = pool.map(lambda e: _try_decode(base / e.path, size), entries)
        bar = tqdm(results, total=len(entries), desc=f"decoding {source.name} {split}", unit="img",
                   disable=not show, leave=False, file=sys.stderr)
        for entry, result in zip(entries, bar):
            if isinstance(result, str):
                if not source.skip_bad_images:
                    raise _unreadable(base / entry.path, result)
                skipped.append((entry.path, result))
                continue
            images[len(labels)] = result
            labels.append(entry.label)
    finally:
        pool.shutdown(cancel_futures=True)
    images = images[:len(labels)]
    decoded = folder_cache.Decoded(images, np.asarray(labels, dtype=np.int64), skipped, *channel_stats(images))
    folder_cache.write(source, split, base, classes, entries, decoded)
    return decoded


def _unreadable(path: Path, why: str) -> UserError:
    return UserError(f"{path} is not a readable image ({why}); remove it, or skip such files with skip_bad_images")


def _check_skipped(source: FolderSource, split: str, base: Path, classes: tuple[str, ...],
                   skipped: list[tuple[str, str]], labels: np.ndarray) -> None:
    """Fail on unreadable files unless they are skipped; then say how many were, and fail when
    a class lost all its images."""
    if not skipped:
        return
    if not source.skip_bad_images:
        raise _unreadable(base / skipped[0][0], skipped[0][1])
    shown = ", ".join(path for path, _ in skipped[:3]) + (", ..." if len(skipped) > 3 else "")
    _stderr(f"{source.name} {split}: skipped {len(skipped)} unreadable "
                        f"file{'s' if len(skipped) > 1 else ''} in {base}: {shown}")
    empty = [name for label, name in enumerate(classes) if not np.any(labels == label)]
    if empty:
        raise UserError(f"{base}: no readable images in class folder{'s' if len(empty) > 1 else ''} "
                        f"{', '.join(empty)}")


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def channel_stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 (N, C, H, W) pixels scaled to [0, 1], from exact
    integer sums (64 images at a time); std at least 1/255."""
    squares_of = np.arange(256, dtype=np.uint32) ** 2
    total = images.sum(axis=(0, 2, 3), dtype=np.uint64).astype(np.float64)
    squares = sum((squares_of[images[i:i + 64]].sum(axis=(0, 2, 3), dtype=np.uint64)
                   for i in range(0, len(images), 64)), np.zeros(images.shape[1], np.uint64)).astype(np.float64)
    count = max(len(images) * images.shape[2] * images.shape[3], 1)
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean ** 2, 0))
    return tuple((mean / 255).tolist()), tuple(np.maximum(std / 255, 1 / 255).tolist())
