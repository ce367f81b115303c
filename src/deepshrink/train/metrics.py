"""A JSON-lines metrics log: one JSON object per line, appended and flushed as it happens."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

from deepshrink.files import atomic_write_text


class MetricsLog:
    """Append-only JSONL file; ``None`` path makes it a no-op."""

    def __init__(self, path: str | os.PathLike | None):
        self.path = Path(path) if path is not None else None

    def write(self, record: dict[str, Any]) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, sort_keys=True) + "\n")
            handle.flush()

    def read(self) -> list[dict[str, Any]]:
        if self.path is None or not self.path.is_file():
            return []
        records = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut short by a crash
                continue
        return records

    def keep(self, predicate: Callable[[dict[str, Any]], bool]) -> None:
        """Rewrite the log keeping only the records for which ``predicate`` holds."""
        if self.path is None or not self.path.is_file():
            return
        kept = [json.dumps(r, sort_keys=True) + "\n" for r in self.read() if predicate(r)]
        atomic_write_text(self.path, "".join(kept))
