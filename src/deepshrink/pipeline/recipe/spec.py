"""The validated recipe: plain frozen dataclasses the runner reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepshrink.data import FolderSource
from deepshrink.pipeline.quantize import MixedPrecision
from deepshrink.train import TrainConfig


@dataclass(frozen=True)
class DataSpec:
    """A dataset by ``name`` (read from ``dir`` when it needs one), or your own images:
    ``name`` "folder" and ``folder`` the :class:`~deepshrink.data.FolderSource`."""

    name: str
    dir: Path | None = None
    limit_train: int | None = None
    limit_test: int | None = None
    folder: FolderSource | None = None

    @property
    def source(self) -> str | FolderSource:
        """What :func:`deepshrink.data.load_dataset` takes as the dataset."""
        return self.folder if self.folder is not None else self.name


@dataclass(frozen=True)
class ModelSource:
    """``kind`` is zoo (``name`` + builder ``options``), builder (``name`` = ``PKG.MODULE:FUNCTION``
    + its ``options``, the recipe's ``kwargs``), pretrained (``name`` + ``path`` to the
    checkpoint) or file (``path`` to a model file)."""

    kind: str
    name: str | None = None
    path: Path | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Distill:
    teacher: str = "original"
    temperature: float = 4.0
    alpha: float = 0.9


@dataclass(frozen=True)
class EncodeSettings:
    float_dtype: str = "float32"
    bn_affine: bool = False  # BatchNorms as inference scale and shift (see deepshrink.codec.batchnorm)


@dataclass(frozen=True)
class ExportSettings:
    format: str


@dataclass(frozen=True)
class Stage:
    """One stage. ``settings``: PruneConfig, StructuredConfig, QuantConfig, EncodeSettings,
    ExportSettings, or None (train); ``train``: the training settings of a training stage;
    ``options``: the stage's keys as written (after checking), recorded in ``stage.json``.
    A quantize stage may have ``mixed`` (per-layer bits under a size budget; its QuantConfig's
    ``bits`` is then the largest option) and ``calibration_images`` (None: the job's default)."""

    kind: str
    options: dict[str, Any]
    settings: Any = None
    train: TrainConfig | None = None
    distill: Distill | None = None
    mixed: MixedPrecision | None = None
    calibration_images: int | None = None


@dataclass(frozen=True)
class Recipe:
    name: str
    out: Path | None  # None: the recipe has no 'out' (run --out DIR gives the folder)
    data: DataSpec
    model: ModelSource
    stages: tuple[Stage, ...]
    device: str = "auto"
    threads: int | None = None
    source: str = "<recipe>"
