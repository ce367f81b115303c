"""The cache of decoded image-folder splits: one uncompressed ``.npz`` per split and image size.

A file's name carries a hash of the tree's path, the split and the image size; its content
carries a key hashing the split's file list with every file's size and mtime, the classes and
the image size, so a changed, added or removed file means a miss (and a new decode). Written
atomically (:func:`deepshrink.files.atomic_path`), read with ``allow_pickle=False``; a file that
does not read back as expected is a miss, never an error. Writing it replaces older entries of
the same tree, split and size.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from deepshrink.files import atomic_path

if TYPE_CHECKING:
    from deepshrink.data.folder import Entry, FolderSource

VERSION = 1  # bump when decoding changes what the arrays hold


@dataclass(frozen=True)
class Decoded:
    """A decoded split: uint8 (N, 3, S, S) ``images``, int64 ``labels``, the ``skipped`` files
    (path, why) and the per-channel ``mean`` and ``std`` of the images."""

    images: np.ndarray
    labels: np.ndarray
    skipped: list[tuple[str, str]]
    mean: tuple[float, ...]
    std: tuple[float, ...]


def cache_dir(source: FolderSource) -> Path:
    """``source.cache_dir``, else ``$XDG_CACHE_HOME/deepshrink`` (``~/.cache/deepshrink``)."""
    if source.cache_dir is not None:
        return source.cache_dir
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "deepshrink"


def key_of(source: FolderSource, split: str, base: Path, classes: tuple[str, ...], entries: list[Entry]) -> str:
    """SHA-256 of what the decoded split depends on: files (path, class, size, mtime), classes, size."""
    files = [[e.path, e.label, *_stamp(base / e.path)] for e in entries]
    text = json.dumps({"version": VERSION, "split": split, "image_size": source.image_size,
                       "classes": list(classes), "files": files}, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _stamp(path: Path) -> tuple[int, int]:
    try:
        stat = path.stat()
    except OSError:  # a dangling link: decoding names it
        return -1, -1
    return stat.st_size, stat.st_mtime_ns


def _prefix(source: FolderSource, split: str) -> str:
    root = source.root.resolve()
    where = hashlib.sha256(str(root).encode()).hexdigest()[:8]
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", root.name)[:40] or "root"
    return f"folder-{name}-{where}-{split}-{source.image_size}px"


def path_of(source: FolderSource, split: str, key: str) -> Path:
    """The cache file of this tree, split, image size and key."""
    return cache_dir(source) / f"{_prefix(source, split)}-{key[:16]}.npz"


def read(source: FolderSource, split: str, base: Path, classes: tuple[str, ...],
         entries: list[Entry]) -> Decoded | None:
    """The cached split, or None when there is no valid entry for the current files."""
    key = key_of(source, split, base, classes, entries)
    path = path_of(source, split, key)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = {name: stored[name] for name in stored.files}
        return _checked(arrays, key, classes, source.image_size)
    except (OSError, ValueError, KeyError, EOFError):
        return None


def _checked(arrays: dict[str, np.ndarray], key: str, classes: tuple[str, ...], size: int) -> Decoded | None:
    images, labels, mean, std = arrays["images"], arrays["labels"], arrays["mean"], arrays["std"]
    if (str(arrays["key"]) != key or tuple(arrays["classes"].tolist()) != classes
            or images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (3, size, size)
            or labels.dtype != np.int64 or labels.shape != images.shape[:1]
            or (labels.size and (labels.min() < 0 or labels.max() >= len(classes)))
            or mean.shape != (3,) or std.shape != (3,) or not (std > 0).all()):
        return None
    skipped = list(zip(arrays["skipped_paths"].tolist(), arrays["skipped_reasons"].tolist()))
    return Decoded(np.ascontiguousarray(images), labels, skipped, tuple(mean.tolist()), tuple(std.tolist()))


def write(source: FolderSource, split: str, base: Path, classes: tuple[str, ...], entries: list[Entry],
          decoded: Decoded) -> Path | None:
    """Store a decoded split (atomically) and drop older entries of the same tree, split and
    size; a cache that cannot be written is reported on stderr, not an error."""
    key = key_of(source, split, base, classes, entries)
    path = path_of(source, split, key)
    arrays = {"images": decoded.images, "labels": decoded.labels, "key": np.array(key),
              "classes": np.array(classes, dtype=str), "mean": np.array(decoded.mean), "std": np.array(decoded.std),
              "skipped_paths": np.array([p for p, _ in decoded.skipped], dtype=str),
              "skipped_reasons": np.array([w for _, w in decoded.skipped], dtype=str)}
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
        for old in path.parent.glob(f"{_prefix(source, split)}-*.npz"):
            if old != path:
                old.unlink(missing_ok=True)
    except OSError as exc:
        print(f"{source.name}: could not write the image cache {path}: {exc}", file=sys.stderr)
        return None
    return path
