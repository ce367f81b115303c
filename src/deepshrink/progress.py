"""Progress of long steps on stderr: a bar on a terminal, a line per step in a log file.

:func:`steps` wraps a loop (a tqdm bar on a terminal; otherwise, once the loop has run for
:data:`QUIET_SECONDS`, one line per item with the elapsed time). :func:`step` wraps one long
step without parts (a status line on a terminal, erased when done; in a log, one line when it
took longer than :data:`QUIET_SECONDS`). Short work stays silent, and only the main process
(torchrun rank 0) reports.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from tqdm import tqdm

__all__ = ["QUIET_SECONDS", "step", "steps"]

QUIET_SECONDS = 2.0
T = TypeVar("T")


def _reporting() -> bool:
    return os.environ.get("RANK", "0") == "0"


def steps(items: Iterable[T], desc: str, total: int | None = None, unit: str = "it") -> Iterator[T]:
    """Yield ``items``, showing progress as described in the module docstring."""
    if not _reporting():
        yield from items
        return
    if sys.stderr.isatty():
        yield from tqdm(items, desc=desc, total=total, unit=unit, leave=False, file=sys.stderr)
        return
    total = total if total is not None else (len(items) if hasattr(items, "__len__") else None)
    start = time.monotonic()
    for done, item in enumerate(items, 1):
        yield item
        elapsed = time.monotonic() - start
        if elapsed >= QUIET_SECONDS:
            count = f"{done}/{total}" if total is not None else f"{done}"
            print(f"{desc}: {count} {unit} ({elapsed:.0f} s)", file=sys.stderr, flush=True)


@contextmanager
def step(desc: str) -> Iterator[None]:
    """Run the body as one step named ``desc`` (e.g. "loading cifar10 train")."""
    if not _reporting():
        yield
        return
    terminal = sys.stderr.isatty()
    if terminal:
        print(f"{desc} ...", end="", file=sys.stderr, flush=True)
    start = time.monotonic()
    try:
        yield
    finally:
        if terminal:
            print("\r\033[K", end="", file=sys.stderr, flush=True)
    elapsed = time.monotonic() - start  # reported only when the step succeeded
    if elapsed >= QUIET_SECONDS:
        print(f"{desc}: {elapsed:.1f} s", file=sys.stderr, flush=True)
