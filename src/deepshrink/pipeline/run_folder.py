"""The layout of a recipe's run folder: ``OUT/NN-kind/`` per stage, each finished by ``stage.json``.

A stage folder holds its model file (``model.safetensors``), for an encode stage the ``.dsz``
and the decoded model, for an export stage the exported file, and for a training stage the
training run (``train/``: ``last.ckpt``, ``metrics.jsonl``). ``stage.json`` is written
atomically last: a folder without it is an unfinished stage.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from deepshrink.errors import UserError
from deepshrink.files import atomic_write_text

STAGE_FILE = "stage.json"
MODEL_FILE = "model.safetensors"
DSZ_FILE = "model.dsz"
DECODED_FILE = "decoded.safetensors"
TRAIN_DIR = "train"
METRICS_FILE = "metrics.jsonl"


@dataclass(frozen=True)
class StageRecord:
    """What one finished stage did. Paths are relative to the run folder. ``bytes``: the real
    size on disk of ``artefact``; ``ratio``: the starting model's float32 safetensors bytes over
    ``bytes``; ``top1`` (fraction) and ``latency_ms`` (batch 1, median) of ``evaluated``."""

    index: int
    kind: str
    options: dict[str, Any]
    model: str | None        # the model file the next stage starts from
    artefact: str
    evaluated: str
    top1: float
    bytes: int
    ratio: float
    latency_ms: float
    seconds: float           # wall time of the stage, measurements included
    finished: float          # Unix time at which stage.json was written
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def folder(self) -> str:
        return stage_folder_name(self.index, self.kind)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def stage_folder_name(index: int, kind: str) -> str:
    return f"{index:02d}-{kind}"


def write_record(out: Path, record: StageRecord) -> None:
    atomic_write_text(out / record.folder / STAGE_FILE, json.dumps(record.to_dict(), indent=2, sort_keys=True) + "\n")


def read_record(path: str | os.PathLike) -> StageRecord:
    """The record in the ``stage.json`` at ``path``; a :class:`UserError` if it is unreadable."""
    try:
        return StageRecord(**json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None


def read_records(out: str | os.PathLike) -> list[StageRecord]:
    """The finished stages of the run folder ``out``, in order."""
    return sorted((read_record(p) for p in Path(out).glob(f"[0-9][0-9]-*/{STAGE_FILE}")), key=lambda r: r.index)
