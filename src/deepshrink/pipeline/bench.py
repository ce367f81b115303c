"""The bench job: inference latency of a model file, a ``.dsz`` file, an exported ONNX file or an
OpenVINO IR file, on one engine.

Engines: ``torch`` (eager, as stored), ``torch-optimized`` (BatchNorm folded, channels-last:
:func:`inference_copy`), ``onnxruntime`` and ``openvino``. A model file runs in every engine (the
two others get its float32 ONNX export, written to a temporary folder); a ``.onnx`` file runs in
ONNX Runtime or OpenVINO, an IR ``.xml`` file in OpenVINO. Time one engine per process: engines'
thread pools and caches disturb each other's figures.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepshrink.analysis import measure_latency
from deepshrink.errors import UserError
from deepshrink.models import ModelInfo
from deepshrink.models.inference import inference_copy
from deepshrink.pipeline.open import is_onnx, open_model

ENGINES = ("torch", "torch-optimized", "onnxruntime", "openvino")


def default_engine(path: str | os.PathLike) -> str:
    """The engine a file runs in when none is named: ONNX Runtime for ``.onnx``, OpenVINO for
    IR ``.xml``, PyTorch otherwise."""
    return "onnxruntime" if is_onnx(path) else "openvino" if _is_ir(path) else "torch"


def bench_model_file(path: str | os.PathLike, *, batch: int = 1, threads: int | None = None,
                     warmup: int = 5, repeats: int = 30, optimize: bool = False,
                     engine: str | None = None) -> dict[str, Any]:
    """Median and p10/p90 latency (ms per batch) and images/s of ``path`` on ``engine`` on the
    CPU, after ``warmup`` untimed runs. ``optimize`` is the older spelling of
    ``engine="torch-optimized"``. OpenVINO compiles for the fixed ``batch`` (a static shape)."""
    engine = check_engine(path, engine, optimize)
    with tempfile.TemporaryDirectory() as work:
        model, info = open_on_engine(engine, path, threads, batch, Path(work))
        latency = measure_latency(model, info.input.shape, batch=batch, threads=threads,
                                  warmup=warmup, repeats=repeats)
    return {"model": info.arch.name if info.arch else None, "engine": engine,
            "engine_version": engine_version(engine), **latency.to_dict(), "warmup": warmup}


def engine_version(engine: str) -> str:
    if engine == "onnxruntime":
        import onnxruntime

        return onnxruntime.__version__
    if engine == "openvino":
        from deepshrink.quant.openvino import openvino_version

        return openvino_version()
    return torch.__version__


def check_engine(path: str | os.PathLike, engine: str | None, optimize: bool = False) -> str:
    """The engine to run ``path`` in (``None``: :func:`default_engine`), checked against the
    file's kind."""
    if optimize:
        if is_onnx(path) or _is_ir(path):
            raise UserError("--optimize applies to model files; ONNX Runtime and OpenVINO optimise their graphs "
                            "themselves")
        if engine not in (None, "torch-optimized"):
            raise UserError(f"--optimize is --engine torch-optimized; it cannot go with --engine {engine}")
        engine = "torch-optimized"
    engine = engine or default_engine(path)
    if engine not in ENGINES:
        raise UserError(f"unknown engine {engine!r}; choose one of: {', '.join(ENGINES)}")
    if is_onnx(path) and engine not in ("onnxruntime", "openvino"):
        raise UserError(f"a .onnx file runs in --engine onnxruntime or openvino, not {engine}")
    if _is_ir(path) and engine != "openvino":
        raise UserError(f"an OpenVINO .xml file runs only in --engine openvino, not {engine}")
    return engine


def open_on_engine(engine: str, path: str | os.PathLike, threads: int | None, batch: int | None,
                   work: Path) -> tuple[nn.Module, ModelInfo]:
    """(callable model on ``engine``, info); a model file bound for ONNX Runtime or OpenVINO
    is exported to ONNX in ``work`` first (needed only until this returns). ``batch``: the
    batch size OpenVINO compiles for (``None``: dynamic)."""
    if engine == "openvino":
        from deepshrink.quant.openvino import OpenVinoModel, read_info, require_openvino

        require_openvino()
        if _is_ir(path):
            return OpenVinoModel(path, threads, batch), read_info(path)
        onnx_path, info = _as_onnx(path, work)
        return OpenVinoModel(onnx_path, threads, batch), info
    if engine == "onnxruntime" and not is_onnx(path):
        from deepshrink.quant.onnx_export import load_onnx

        return load_onnx(_as_onnx(path, work)[0], threads)
    model, info = open_model(path, threads)
    return (inference_copy(model) if engine == "torch-optimized" else model), info


def _as_onnx(path: str | os.PathLike, work: Path) -> tuple[Path, ModelInfo]:
    """``path`` itself if it is ONNX, else its float32 ONNX export in ``work``; and its info."""
    from deepshrink.quant.onnx_export import export_onnx, load_onnx

    if is_onnx(path):
        return Path(path), load_onnx(path, threads=1)[1]
    model, info = open_model(path)
    return export_onnx(model, info, work / "model.onnx"), info


def _is_ir(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() == ".xml"
