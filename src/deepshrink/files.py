"""Atomic file writing: a file is either the old one or the complete new one, never half.

Output paths are checked before anything is written (:func:`check_output`): an existing target
that is not a regular file (a directory, a device such as ``/dev/full``, a fifo, a socket) or
that is one of the command's inputs is refused, and any ``OSError`` while writing (a read-only
folder, a full disk) becomes one :class:`~deepshrink.errors.UserError` naming the path.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

from deepshrink.errors import UserError


class OutputError(UserError, OSError):
    """A path that cannot be written, in one line: a :class:`UserError` (the CLI's exit code 2)
    and still an ``OSError``, so that callers that tolerate a failed write keep catching it."""


def check_output(path: str | os.PathLike, inputs: Iterable[str | os.PathLike] = ()) -> Path:
    """``path`` as a :class:`Path` if it may be written: it does not exist or is a regular file,
    and it is none of ``inputs`` (the same file under any name); :class:`UserError` otherwise."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return path
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(mode):
        raise OutputError(f"cannot write {path}: it is a directory; give a file name")
    if not stat.S_ISREG(mode):
        raise OutputError(f"cannot write {path}: it exists and is not a regular file")
    for source in inputs:
        if _same_file(path, source):
            raise OutputError(f"cannot write {path}: it is the input {source}; give another output path")
    return path


def _same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether ``a`` and ``b`` name the same existing file (False when either is missing)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def make_folder(path: str | os.PathLike) -> Path:
    """Create the folder ``path`` (and its parents) if needed; :class:`UserError` naming it when
    it cannot be (a file is in the way, a read-only parent)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputError(f"cannot write into {path}: it exists and is not a folder") from None
    except OSError as exc:
        raise OutputError(f"cannot write into {path}: {_reason(exc, path)}") from None
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success fsync it and rename it over ``path``.

    On any exception the temporary file is removed and ``path`` is left untouched; an
    ``OSError`` (a read-only folder, a full disk) becomes a :class:`UserError` naming ``path``,
    as does a target that is not a regular file (:func:`check_output`).
    """
    path = check_output(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {_reason(exc, path)}") from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual mode
        os.replace(tmp_path, path)
        _fsync_dir(path.parent)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {_reason(exc, path)}") from None
    finally:
        tmp_path.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def _reason(exc: OSError, path: Path) -> str:
    """Why an ``OSError`` happened, in words (``No space left on device``), naming the file
    involved unless it is ``path`` itself or its temporary file beside it."""
    reason = exc.strerror or str(exc)
    other = Path(exc.filename) if exc.filename is not None else path
    if other == path or (other.parent == path.parent and other.name.startswith(f".{path.name}.")):
        return reason
    return f"{reason}: {other}"


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
