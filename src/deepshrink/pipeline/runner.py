"""Running a recipe: the stages in order, each measured, resumable after an interruption.

Stage 0 (``00-model``) materialises the starting model (a fresh zoo model, an imported
checkpoint, or a copy of a model file); the recipe's stages follow as ``01-train``,
``02-prune``, ... (see :mod:`deepshrink.pipeline.run_folder`). After each stage the runner
measures, on the artefact itself: test top-1, bytes on disk, the ratio against the float32
safetensors of the starting model, and batch-1 latency. At the end it writes the report.

Under torchrun every rank runs the recipe: the training stages (train, prune, structured,
quantize) are collective, each rank training on its shard of the global batch; the rest
(stage 0, encode, export, the measurements, ``stage.json`` and the report) runs on rank 0
only. Rank 0 alone writes into the run folder and decides what a resumed run skips; the
other ranks receive its decisions and records (:class:`RankSync`), which is also the barrier
after each stage's files are written, before any rank reads them. The run folder must be on a
file system every rank sees (checked after each stage). How a failure on one rank ends the
others: see :mod:`deepshrink.pipeline.rank_sync`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch.nn.utils import parametrize

from deepshrink.codec import encode_file
from deepshrink.codec.files import decode_file
from deepshrink.codec.report import float32_size
from deepshrink.data import BatchLoader, ImageDataset
from deepshrink.errors import UserError
from deepshrink.models import ModelPath, build_model, load_model, save_model
from deepshrink.models.builders import builder_package, check_allow_list
from deepshrink.pipeline.bench import bench_model_file
from deepshrink.pipeline.datasets import check_fits, load_split
from deepshrink.pipeline.evaluate import evaluate_model_file
from deepshrink.pipeline.export import export_job
from deepshrink.pipeline.import_pretrained import import_pretrained_job
from deepshrink.pipeline.prune import prune_job
from deepshrink.pipeline.quantize import quantize_job
from deepshrink.pipeline.rank_sync import RankSync
from deepshrink.pipeline.recipe import COMPRESSING, Recipe, Stage
from deepshrink.pipeline.run_folder import (DECODED_FILE, DSZ_FILE, MODEL_FILE, STAGE_FILE, TRAIN_DIR, StageRecord,
                                            read_record, stage_folder_name, write_record)
from deepshrink.pipeline.run_report import write_run_report
from deepshrink.pipeline.structured_prune import structured_prune_job
from deepshrink.pipeline.train import distillation_hook, new_model_info, train_job

LATENCY_REPEATS = 10          # batch-1 forward passes timed per stage (after 3 warm-up passes),
                              # on recipe.threads threads (default 1)
CALIBRATION_IMAGES = 512      # training images that calibrate an int8-onnx export
COMPARE_IMAGES = 500          # test images on which decoded and encoded models are compared
COLLECTIVE = ("train", *COMPRESSING)  # stages every rank runs under torchrun; the others run on rank 0


@dataclass(frozen=True)
class RunResult:
    out: Path
    stages: list[StageRecord]
    resumed: list[int]        # indices of the stages found finished and skipped
    report: Path              # report.md
    train_images: int
    test_images: int


@dataclass
class _Context:
    recipe: Recipe
    out: Path
    train_set: ImageDataset
    test_set: ImageDataset
    resume: bool
    progress: bool | None
    ranks: RankSync
    baseline_bytes: int = 0
    original: Path | None = None   # the model before the first compressing stage
    continue_training: bool = False  # the stage being run continues from its train/last.ckpt
    allow_builders: tuple[str, ...] = ()  # packages whose builders the run's model files may name


def run_recipe(recipe: Recipe, *, out: str | os.PathLike | None = None, resume: bool = False,
               progress: bool | None = None,
               on_stage: Callable[[StageRecord, bool], None] | None = None, allow_builders=()) -> RunResult:
    """Run ``recipe`` into ``out`` (default: ``recipe.out``); returns the finished stages.

    With ``resume``, the finished stages up to the first unfinished one are skipped (they
    must have been run with the same settings), an unfinished training stage continues from
    its checkpoint, and every stage after it runs afresh; without ``resume``, a run folder
    that already holds stages is an error.
    ``on_stage(record, skipped)`` is called after each stage (on rank 0 only under torchrun).
    Under torchrun every rank calls this with the same recipe and gets the same result.
    Model files may name builders from the ``allow_builders`` packages and from the package of
    the recipe's own ``model.builder``.
    """
    if out is None and recipe.out is None:
        raise UserError(f"{recipe.source}: recipe: missing required key 'out' (the run folder); "
                        f"add out: DIR to the recipe or give deepshrink run --out DIR")
    out = Path(out if out is not None else recipe.out)
    ranks = RankSync.join(recipe.device)
    ranks.agree(lambda: _check_can_start(recipe, out, resume))
    threads = torch.get_num_threads()
    if recipe.threads is not None:
        torch.set_num_threads(recipe.threads)
    try:
        return _run(recipe, out, resume, progress, ranks, on_stage if ranks.is_main else None,
                    _allowed(recipe, allow_builders))
    finally:
        torch.set_num_threads(threads)


def _run(recipe: Recipe, out: Path, resume: bool, progress: bool | None, ranks: RankSync,
         on_stage: Callable[[StageRecord, bool], None] | None, allow_builders: tuple[str, ...]) -> RunResult:
    ctx = _Context(recipe, out, load_split(recipe.data.source, "train", recipe.data.dir, recipe.data.limit_train),
                   load_split(recipe.data.source, "test", recipe.data.dir, recipe.data.limit_test), resume, progress,
                   ranks, allow_builders=allow_builders)
    stages: list[tuple[str, Stage | None]] = [("model", None), *((s.kind, s) for s in recipe.stages)]
    records, resumed, model = [], [], None
    for index, (kind, stage) in enumerate(stages):
        if stage is not None and stage.kind in COMPRESSING and ctx.original is None:
            ctx.original = model
        plan = ranks.on_main(lambda: _plan_stage(ctx, index, kind, stage))
        if plan["finished"] is None:
            ctx.continue_training = plan["continue_training"]
            record = _run_stage(ctx, index, kind, stage, model)
            ctx.resume = False  # the stages after a redone one start afresh
        else:
            record = StageRecord(**plan["finished"])
            resumed.append(index)
        if ranks.active:
            ranks.agree(lambda: _check_visible(out, record))
        if index == 0:
            ctx.baseline_bytes = record.details["float32_bytes"]
        model = ModelPath(out / record.model, allow_builders) if record.model is not None else model
        records.append(record)
        if on_stage is not None:
            on_stage(record, index in resumed)
    report = Path(ranks.on_main(lambda: str(write_run_report(out, title=recipe.name, allow_builders=allow_builders))))
    return RunResult(out, records, resumed, report, len(ctx.train_set), len(ctx.test_set))


def _allowed(recipe: Recipe, allow_builders) -> tuple[str, ...]:
    """The builder packages the run's model files may name: ``allow_builders`` and the package
    of the recipe's ``model.builder`` (named by the user, so allowed)."""
    explicit = (builder_package(recipe.model.name),) if recipe.model.kind == "builder" else ()
    return (*check_allow_list(allow_builders), *explicit)


def _check_can_start(recipe: Recipe, out: Path, resume: bool) -> None:
    """The files the recipe names exist, and ``out`` holds no run unless resuming (checked
    before anything runs, on every rank)."""
    folder = recipe.data.folder.root if recipe.data.folder is not None else None
    paths = [("data.dir", recipe.data.dir), ("data.folder", folder),
             (f"model.{'checkpoint' if recipe.model.kind == 'pretrained' else 'file'}", recipe.model.path)]
    for key, path in paths:
        if path is not None and not path.exists():
            raise UserError(f"{recipe.source}: {key}: {path} does not exist")
    if not resume and any(out.glob(f"[0-9][0-9]-*/{STAGE_FILE}")):
        raise UserError(f"{out} already holds a run: give --resume to continue it, or another --out")


def _check_visible(out: Path, record: StageRecord) -> None:
    """The stage's record and the model the next stage reads are on this rank's file system."""
    for path in (out / record.folder / STAGE_FILE, *([out / record.model] if record.model is not None else [])):
        if not path.is_file():
            raise UserError(f"{path} (written by rank 0) is missing here: under torchrun the run folder must "
                            f"be on a file system that every process sees")


def _plan_stage(ctx: _Context, index: int, kind: str, stage: Stage | None) -> dict[str, Any]:
    """Rank 0's decision for stage ``index``: ``{"finished": record}`` to skip it (resume), or
    ``{"finished": None, "continue_training": bool}`` with its folder ready to run it."""
    record = _finished(ctx, index, kind, stage)
    if record is not None:
        return {"finished": record.to_dict()}
    folder = ctx.out / stage_folder_name(index, kind)
    continue_training = ctx.resume and (folder / TRAIN_DIR / "last.ckpt").is_file()
    if folder.exists() and not continue_training:
        shutil.rmtree(folder)  # an unfinished stage that cannot continue: start it afresh
    folder.mkdir(parents=True, exist_ok=True)
    return {"finished": None, "continue_training": continue_training}


def _finished(ctx: _Context, index: int, kind: str, stage: Stage | None) -> StageRecord | None:
    path = ctx.out / stage_folder_name(index, kind) / STAGE_FILE
    if not (ctx.resume and path.is_file()):
        return None
    record = read_record(path)
    if record.options != _options(ctx.recipe, stage):
        raise UserError(f"{path.parent} was run with other settings than the recipe's "
                        f"{stage_folder_name(index, kind)}; run into another --out")
    return record


def _options(recipe: Recipe, stage: Stage | None) -> dict[str, Any]:
    """The settings recorded in stage.json (and compared on resume), as JSON data."""
    if stage is not None:
        options = stage.options
    else:
        source = recipe.model
        options = {source.kind: source.name or str(source.path),
                   **({"kwargs" if source.kind == "builder" else "options": source.options} if source.options else {}),
                   **({"checkpoint": str(source.path)} if source.kind == "pretrained" else {})}
    return json.loads(json.dumps(options))


def _run_stage(ctx: _Context, index: int, kind: str, stage: Stage | None, model: Path | None) -> StageRecord:
    """Run the stage (a training stage on every rank, any other on rank 0), then measure it and
    write its ``stage.json`` on rank 0; every rank returns rank 0's record."""
    start = time.perf_counter()
    folder = ctx.out / stage_folder_name(index, kind)
    run = _RUNNERS[kind]
    outputs = run(ctx, stage, model, folder) if kind in COLLECTIVE else None

    def measure() -> dict[str, Any]:
        next_model, artefact, evaluated, details = outputs or run(ctx, stage, model, folder)
        allowed = ModelPath(evaluated, ctx.allow_builders)
        if index == 0:
            loaded = load_model(next_model, allow_builders=ctx.allow_builders)[1]
            details["float32_bytes"] = ctx.baseline_bytes = float32_size(loaded.arch)
        top1 = evaluate_model_file(allowed, ctx.test_set, device=ctx.recipe.device)["top1"]
        latency = bench_model_file(allowed, batch=1, threads=ctx.recipe.threads or 1, warmup=3,
                                   repeats=LATENCY_REPEATS)
        size = artefact.stat().st_size
        record = StageRecord(
            index=index, kind=kind, options=_options(ctx.recipe, stage),
            model=None if next_model is None else str(next_model.relative_to(ctx.out)),
            artefact=str(artefact.relative_to(ctx.out)), evaluated=str(evaluated.relative_to(ctx.out)),
            top1=top1, bytes=size, ratio=ctx.baseline_bytes / size, latency_ms=latency["latency_ms"],
            seconds=time.perf_counter() - start, finished=time.time(), details=details)
        write_record(ctx.out, record)
        return record.to_dict()

    return StageRecord(**ctx.ranks.on_main(measure))


# Each stage runner returns (model for the next stage, artefact, file evaluated, details).

def _model_stage(ctx: _Context, stage: None, model: None, folder: Path):
    source, path = ctx.recipe.model, folder / MODEL_FILE
    if source.kind in ("zoo", "builder"):
        torch.manual_seed(ctx.recipe.stages[0].train.seed)  # as train_job seeds a fresh model
        info = new_model_info(source.name, ctx.train_set, source.options)
        save_model(path, build_model(info.arch), info)
    elif source.kind == "pretrained":
        import_pretrained_job(source.name, source.path, path)
    else:
        loaded, info = load_model(source.path, allow_builders=ctx.allow_builders)
        save_model(path, loaded, info)
    check_fits(load_model(path, allow_builders=ctx.allow_builders)[1], ctx.train_set)
    return path, path, path, {"source": source.kind}


def _distillation(ctx: _Context, stage: Stage, model: Path) -> tuple[list, dict[str, Any]]:
    """(hooks, details) of the stage's ``distill`` setting: the distillation hook and its teacher."""
    if stage.distill is None:
        return [], {}
    teacher = model if stage.distill.teacher == "previous" or ctx.original is None else ctx.original
    hook = distillation_hook(teacher, ctx.train_set, temperature=stage.distill.temperature, alpha=stage.distill.alpha)
    return [hook], {"teacher": str(Path(teacher).relative_to(ctx.out))}


def _train_stage(ctx: _Context, stage: Stage, model: Path, folder: Path):
    hooks, details = _distillation(ctx, stage, model)
    trainer, _ = train_job(ctx.train_set, ctx.test_set, _train_config(ctx, stage), init_from=model,
                           out_dir=folder / TRAIN_DIR, resume=ctx.continue_training, hooks=hooks)
    path = folder / MODEL_FILE
    if ctx.ranks.is_main:  # under torchrun only rank 0 writes
        save_model(path, trainer.model.cpu(), trainer.info)
    return path, path, path, details


def _prune_stage(ctx: _Context, stage: Stage, model: Path, folder: Path):
    hooks, details = _distillation(ctx, stage, model)
    result = prune_job(model, folder / MODEL_FILE, stage.settings, _train_config(ctx, stage),
                       **_job_data(ctx, folder), hooks=hooks)
    return folder / MODEL_FILE, folder / MODEL_FILE, folder / MODEL_FILE, {"sparsity": result.sparsity, **details}


def _structured_stage(ctx: _Context, stage: Stage, model: Path, folder: Path):
    hooks, details = _distillation(ctx, stage, model)
    result = structured_prune_job(model, folder / MODEL_FILE, stage.settings, _train_config(ctx, stage),
                                  **_job_data(ctx, folder), hooks=hooks)
    details.update({k: result.record[k] for k in ("macs_before", "macs_after", "params_before", "params_after")
                    if k in result.record})
    return folder / MODEL_FILE, folder / MODEL_FILE, folder / MODEL_FILE, details


def _quantize_stage(ctx: _Context, stage: Stage, model: Path, folder: Path):
    hooks, details = _distillation(ctx, stage, model)
    calibration = {} if stage.calibration_images is None else {"calibration_images": stage.calibration_images}
    result = quantize_job(model, folder / MODEL_FILE, stage.settings, _train_config(ctx, stage),
                          **_job_data(ctx, folder), hooks=hooks, mixed=stage.mixed, **calibration)
    if stage.mixed is not None:
        details.update({key: result.record[key] for key in ("assignment", "size_bytes", "budget_bytes")})
    return folder / MODEL_FILE, folder / MODEL_FILE, folder / MODEL_FILE, details


def _encode_stage(ctx: _Context, stage: Stage, model: Path, folder: Path):
    settings = stage.settings
    encode_file(model, folder / DSZ_FILE, float_dtype=settings.float_dtype, bn_affine=settings.bn_affine)
    decode_file(folder / DSZ_FILE, folder / DECODED_FILE, allow_builders=ctx.allow_builders)
    identical = same_outputs(model, ModelPath(folder / DECODED_FILE, ctx.allow_builders), ctx.test_set.subset(min(COMPARE_IMAGES, len(ctx.test_set))))
    return folder / DECODED_FILE, folder / DSZ_FILE, folder / DECODED_FILE, {"identical_outputs": identical}


def _export_stage(ctx: _Context, stage: Stage, model: Path, folder: Path):
    fmt = stage.settings.format
    path = folder / ("model.onnx" if fmt.endswith("onnx") else MODEL_FILE)
    calibration = ctx.train_set.subset(min(CALIBRATION_IMAGES, len(ctx.train_set))) if fmt == "int8-onnx" else None
    export_job(model, fmt, path, calibration_set=calibration)
    return None, path, path, {"format": fmt}


_RUNNERS = {"model": _model_stage, "train": _train_stage, "prune": _prune_stage, "structured": _structured_stage,
            "quantize": _quantize_stage, "encode": _encode_stage, "export": _export_stage}


def _train_config(ctx: _Context, stage: Stage):
    return dataclasses.replace(stage.train, progress=ctx.progress)


def _job_data(ctx: _Context, folder: Path) -> dict[str, Any]:
    return {"train_set": ctx.train_set, "test_set": ctx.test_set, "run_dir": folder / TRAIN_DIR,
            "resume": ctx.continue_training}


@torch.inference_mode()
def same_outputs(model_file: str | os.PathLike, other_file: str | os.PathLike, dataset: ImageDataset) -> bool:
    """Whether the two model files give bit-identical logits on ``dataset`` (normalised as the first expects)."""
    first, info = load_model(model_file)
    second, _ = load_model(other_file)
    loader = BatchLoader(dataset, 500, mean=info.input.mean, std=info.input.std)
    with parametrize.cached():
        return all(torch.equal(first(x), second(x)) for x, _ in loader)
