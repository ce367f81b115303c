"""Inference latency on CPU (or the model's device): warm-up, then the median of timed runs."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch
from torch import nn

from deepshrink.errors import UserError


@dataclass(frozen=True)
class Latency:
    batch: int
    threads: int
    latency_ms: float        # median wall time of one forward pass of ``batch`` images
    p10_ms: float
    p90_ms: float
    images_per_s: float
    repeats: int

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@torch.inference_mode()
def measure_latency(model: nn.Module, input_shape: tuple[int, int, int], *, batch: int = 1,
                    threads: int | None = None, warmup: int = 5, repeats: int = 30,
                    min_seconds: float = 0.0) -> Latency:
    """Time ``model`` on random inputs of shape (batch, *input_shape).

    Runs ``warmup`` untimed passes, then at least ``repeats`` timed ones (more until
    ``min_seconds`` have passed). ``threads`` sets torch's intra-op threads for the
    measurement and restores the previous value afterwards.
    """
    if batch < 1 or repeats < 1 or warmup < 0:
        raise UserError("batch and repeats must be >= 1 and warm-up >= 0")
    previous = torch.get_num_threads()
    if threads is not None:
        if threads < 1:
            raise UserError(f"threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    try:
        model.eval()
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        inputs = torch.randn(batch, *input_shape, generator=torch.Generator().manual_seed(0)).to(device)
        for _ in range(warmup):
            model(inputs)
        times: list[float] = []
        deadline = time.perf_counter() + min_seconds
        while len(times) < repeats or time.perf_counter() < deadline:
            _sync(device)
            start = time.perf_counter()
            model(inputs)
            _sync(device)
            times.append(time.perf_counter() - start)
        used = torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)
    times.sort()
    median = statistics.median(times)
    return Latency(batch, used, median * 1e3, _quantile(times, 0.1) * 1e3,
                   _quantile(times, 0.9) * 1e3, batch / median, len(times))


def _quantile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
