"""The embedded default: the whole pipeline on scikit-learn's 8x8 digits.

Runs the shipped recipe ``digits-demo.yaml`` (package data, also linked as
``recipes/digits-demo.yaml``): train ``digits-cnn``, prune, k-means quantize with a short
codebook fine-tune, encode to a ``.dsz`` file and decode it; then checks that the decoded
model scores exactly what the quantized model scored.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import time
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from deepshrink.pipeline.recipe import Recipe, Stage, parse_recipe
from deepshrink.pipeline.run_folder import StageRecord
from deepshrink.pipeline.runner import RunResult, run_recipe

DEMO_RECIPE = "digits-demo.yaml"


@dataclass(frozen=True)
class DemoResult:
    run: RunResult
    quantized: StageRecord
    encoded: StageRecord
    seconds: float

    @property
    def decoded_matches(self) -> bool:
        """The decoded model scores what the quantized one did, with bit-identical outputs."""
        return self.encoded.top1 == self.quantized.top1 and self.encoded.details.get("identical_outputs", False)

    @property
    def dsz_path(self) -> Path:
        return self.run.out / self.encoded.artefact


def demo_recipe(out_dir: str | os.PathLike = "runs/demo", *, epochs: int | None = None) -> Recipe:
    """The shipped demo recipe writing to ``out_dir``; ``epochs`` caps every training stage's epochs."""
    text = files("deepshrink.pipeline").joinpath("recipes", DEMO_RECIPE).read_text(encoding="utf-8")
    recipe = parse_recipe(text, source=DEMO_RECIPE)
    stages = recipe.stages if epochs is None else tuple(_capped(stage, epochs) for stage in recipe.stages)
    return dataclasses.replace(recipe, out=Path(out_dir), stages=stages)


def run_demo(out_dir: str | os.PathLike = "runs/demo", *, epochs: int | None = None,
             progress: bool | None = None) -> DemoResult:
    """Run the demo recipe into ``out_dir`` (replacing a previous demo run there)."""
    start = time.perf_counter()
    recipe = demo_recipe(out_dir, epochs=epochs)
    _remove_previous_run(Path(out_dir))
    run = run_recipe(recipe, progress=progress)
    by_kind = {record.kind: record for record in run.stages}
    return DemoResult(run, by_kind["quantize"], by_kind["encode"], time.perf_counter() - start)


def _capped(stage: Stage, epochs: int) -> Stage:
    if stage.train is None or stage.train.epochs <= epochs:
        return stage
    options = {**stage.options, "epochs": epochs}
    settings = stage.settings
    if getattr(settings, "prune_epochs", None) is not None and settings.prune_epochs > epochs:
        settings = dataclasses.replace(settings, prune_epochs=None)
        options.pop("prune_epochs")
    return dataclasses.replace(stage, options=options, settings=settings,
                               train=dataclasses.replace(stage.train, epochs=epochs))


def _remove_previous_run(out: Path) -> None:
    """Delete the stage folders of an earlier run in ``out`` (only ``NN-kind`` folders)."""
    if out.is_dir():
        for folder in out.iterdir():
            if folder.is_dir() and re.fullmatch(r"\d\d-[a-z]+", folder.name):
                shutil.rmtree(folder)
