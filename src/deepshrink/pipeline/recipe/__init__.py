"""Recipes: one YAML file naming a dataset, a starting model and the stages to run on it.

The whole recipe is validated before anything runs; every mistake is a :class:`UserError`
naming the file, the line and the key path, e.g.
``recipe.yaml line 14: stages[2].quantize.bits: must be one of 2..8, got 9``.

::

    name: lenet5-digits
    out: runs/lenet5            # relative to the current directory (``deepshrink run --out`` overrides)
    data: {name: digits}        # name, dir, limit_train, limit_test
    model: {zoo: lenet5}        # or {zoo: NAME, options: {...}}, {pretrained: resnet20, checkpoint: PATH}, {file: PATH}
    device: auto                # optional; also threads: N
    stages:
      - train: {epochs: 20, lr: 0.05}
      - prune: {amount: 0.8, schedule: linear, epochs: 6, lr: 0.01}
      - train: {epochs: 2, lr: 0.005, distill: {teacher: original, temperature: 4, alpha: 0.9}}
      - quantize: {method: kmeans, bits: 4, epochs: 2, lr: 0.001}
      - encode: {float_dtype: float32}
      - export: {format: onnx}

Stage keys: every training stage (``train``, ``prune``, ``structured``, ``quantize``) takes the
training settings of :data:`TRAIN_KEYS` (``epochs`` is required for ``train`` and defaults to 0,
no fine-tuning, elsewhere; ``lr_schedule`` is the learning-rate schedule, ``schedule`` in a
``prune`` or ``structured`` stage the pruning schedule). ``distill`` (training stages with
epochs > 0) distils from the model before the stage (``teacher: previous``) or from the model
before the first compressing stage (``teacher: original``, the default). A ``quantize`` stage
takes ``bits`` or, for per-layer bits under a size budget, ``mixed_budget_kb`` (with
``mixed_criterion`` and ``mixed_bits``, as ``deepshrink quantize --mixed-budget-kb``), and
``calibration_images`` for activation ranges and mixed-precision sensitivity. Paths inside the
recipe (``data.dir``, ``model.checkpoint``, ``model.file``) are relative to the recipe file's
folder.
"""

from __future__ import annotations

import os
from pathlib import Path

from deepshrink.errors import UserError
from deepshrink.pipeline.recipe.schema import COMPRESSING, STAGE_KEYS, STAGE_KINDS, TRAIN_KEYS
from deepshrink.pipeline.recipe.spec import (DataSpec, Distill, EncodeSettings, ExportSettings, ModelSource, Recipe,
                                             Stage)
from deepshrink.pipeline.recipe.validate import Validator
from deepshrink.pipeline.recipe.yaml_lines import MAX_RECIPE_BYTES, compose

__all__ = ["COMPRESSING", "STAGE_KEYS", "STAGE_KINDS", "TRAIN_KEYS", "DataSpec", "Distill", "EncodeSettings",
           "ExportSettings", "ModelSource", "Recipe", "Stage", "load_recipe", "parse_recipe"]


def load_recipe(path: str | os.PathLike, *, out_given: bool = False) -> Recipe:
    """Read and validate the recipe file at ``path``; ``out_given``: its ``out`` may be
    missing (the caller has the run folder, ``run --out DIR``)."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:  # read at most one byte past the limit, whatever the file is
            data = handle.read(MAX_RECIPE_BYTES + 1)
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read recipe {path}: {exc}") from None
    if len(data) > MAX_RECIPE_BYTES:
        raise UserError(f"{path}: the recipe is larger than {MAX_RECIPE_BYTES // (1 << 20)} MB")
    return parse_recipe(text, source=str(path), base_dir=path.parent, out_given=out_given)


def parse_recipe(text: str, *, source: str = "<recipe>", base_dir: str | os.PathLike = ".",
                 out_given: bool = False) -> Recipe:
    """Validate the YAML ``text`` of a recipe; relative paths inside resolve against ``base_dir``."""
    data, lines = compose(text, source)
    return Validator(source, lines, Path(base_dir)).recipe(data, out_given=out_given)
