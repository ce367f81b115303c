"""The whole mixed-precision plan (sensitivity, sizes, assignment) for the quantize job and the CLI."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from torch import nn
from torch.nn.utils import parametrize

from deepshrink.data import BatchLoader, ImageDataset
from deepshrink.errors import UserError
from deepshrink.models.file import ModelInfo
from deepshrink.quant.api import QuantConfig
from deepshrink.quant.mixed.apply import config_at, mixed_layers
from deepshrink.quant.mixed.knapsack import assign_bits
from deepshrink.quant.mixed.sensitivity import hessian_sensitivity, layer_sensitivity
from deepshrink.quant.mixed.size import float_bytes_besides, layer_size_options, model_size_bytes
from deepshrink.train import evaluate, resolve_device

DEFAULT_BITS = (2, 3, 4, 5, 6, 8)
CRITERIA = ("loss", "accuracy", "hessian")


def mixed_precision_record(config: QuantConfig, assignment: Mapping[str, int], budget_bytes: int,
                           size_bytes: int, float_size_bytes: int, **details: Any) -> dict[str, Any]:
    """The model-history entry (JSON data) of a mixed-precision quantization: the method and
    options, the bits per layer, the budget and achieved size (bytes, by the size
    model of :mod:`deepshrink.quant.mixed.size`) and the float32 size, plus ``details`` (e.g. the criterion)."""
    settings = {k: v for k, v in config.to_dict().items() if k != "bits"}
    return {"stage": "quantize", "mixed_precision": True, **settings, **details,
            "budget_bytes": int(budget_bytes), "size_bytes": int(size_bytes),
            "float_size_bytes": int(float_size_bytes),
            "assignment": {name: int(bits) for name, bits in assignment.items()}}


def _layer_budget(budget_bytes: int, sizes: Mapping[str, Mapping[int, int]], granularity: int) -> int:
    """``budget_bytes`` for the quantized layers, capped at every layer's largest choice plus one
    ``granularity`` per layer (the knapsack's rounding): a larger budget gives the same choices."""
    return min(budget_bytes, sum(max(s.values()) for s in sizes.values()) + len(sizes) * granularity)


def plan_mixed_precision(model: nn.Module, info: ModelInfo, config: QuantConfig, budget_bytes: int,
                         calibration_set: ImageDataset, *, bits_options: Sequence[int] = DEFAULT_BITS,
                         criterion: str = "loss", device: str = "auto", batch_size: int = 500,
                         granularity: int = 64, probes: int = 4) -> tuple[dict[str, int], dict[str, Any]]:
    """Choose per-layer bits (from ``bits_options``) for ``config``'s layers of ``model`` so
    that the whole model, by the size model of :mod:`deepshrink.quant.mixed`, fits
    ``budget_bytes``; returns ``(assignment, record)``. ``model`` is only moved to ``device``;
    apply the assignment with :func:`~deepshrink.quant.mixed.apply.quantize_mixed_` and append
    ``record`` to ``info.history``.

    ``calibration_set`` (a held-out subset, e.g. 1000 training images, normalised as ``info``
    says) measures the sensitivity by ``criterion``: ``loss`` (increase of the mean
    cross-entropy), ``accuracy`` (drop of top-1) or ``hessian`` (Ω of
    :func:`hessian_sensitivity`, ``probes`` Rademacher probes). A too small budget is a
    :class:`UserError` before any evaluation.
    """
    if criterion not in CRITERIA:
        raise UserError(f"unknown sensitivity criterion {criterion!r}; choose one of: {', '.join(CRITERIA)}")
    if not bits_options:
        raise UserError("give at least one bit-width to choose from")
    for bits in bits_options:
        config_at(config, bits)
    layers = list(mixed_layers(model, config))
    if not layers:
        raise UserError("no Conv2d/Linear layer left to quantize after the exclusions")
    if len(calibration_set) == 0:
        raise UserError("the calibration set is empty")
    sizes = layer_size_options(model, layers, bits_options, config)
    fixed = float_bytes_besides(model, layers)
    smallest = fixed + sum(min(s.values()) for s in sizes.values())
    if budget_bytes < smallest:
        raise UserError(f"a budget of {budget_bytes / 1024:.1f} KiB is below the smallest size of this model "
                        f"with its quantized layers at {min(bits_options)} bits and the rest float32: "
                        f"{smallest / 1024:.1f} KiB")
    target = resolve_device(device)
    model.to(target)

    def batches() -> BatchLoader:
        return BatchLoader(calibration_set, batch_size, mean=info.input.mean, std=info.input.std, device=target)

    def score(candidate: nn.Module) -> float:
        with parametrize.cached():
            result = evaluate(candidate, batches(), target)
        return result.top1 if criterion == "accuracy" else -result.loss

    if criterion == "hessian":
        sensitivity = hessian_sensitivity(model, layers, bits_options, config, batches(), probes=probes)
    else:
        sensitivity = layer_sensitivity(model, layers, bits_options, score, config)
    assignment = assign_bits(sensitivity, sizes, _layer_budget(budget_bytes - fixed, sizes, granularity),
                             granularity=granularity)
    size = model_size_bytes(model, assignment, config)
    record = mixed_precision_record(config, assignment, budget_bytes, size, model_size_bytes(model, {}, config),
                                    bits_options=list(bits_options), criterion=criterion,
                                    calibration_images=len(calibration_set))
    return assignment, record
