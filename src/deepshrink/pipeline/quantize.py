"""The quantize job: load a model file, quantize its weights (at one bit-width, or per layer
under a size budget) and optionally its activations (calibrated on training images),
optionally fine-tune (QAT for linear quantization, codebook fine-tuning for k-means), save it."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn

from deepshrink.data import BatchLoader, ImageDataset
from deepshrink.errors import ConfigError, UserError, is_number
from deepshrink.models import ModelInfo, save_model
from deepshrink.pipeline.compress import Compression, FinetuneData, Measures, run_compression
from deepshrink.progress import step
from deepshrink.quant import (KMeansQuantizer, QuantConfig, activation_quantizers_of, attach_activation_quantizers,
                              calibrate_activations, quantize_, quantizers_of)
from deepshrink.quant.mixed import CRITERIA as MIXED_CRITERIA
from deepshrink.quant.mixed import DEFAULT_BITS, plan_mixed_precision, quantize_mixed_
from deepshrink.train import TrainConfig, TrainHook, resolve_device
from deepshrink.train.distributed import broadcast_from_main, current

CALIBRATION_IMAGES = 512


def budget_bytes(kilobytes: float) -> int:
    """A size budget of ``kilobytes`` KiB in whole bytes; :class:`ConfigError` naming
    ``mixed_budget_kb`` unless it is a number > 0 and at most 1e300."""
    if not (is_number(kilobytes) and math.isfinite(kilobytes) and kilobytes > 0):
        raise ConfigError("MixedPrecision", "mixed_budget_kb", f"must be a finite number > 0, got {kilobytes!r}")
    if kilobytes > 1e300:  # 1e307 KiB is finite, but not in bytes
        raise ConfigError("MixedPrecision", "mixed_budget_kb", f"must be at most 1e300, got {kilobytes!r}")
    return round(kilobytes * 1024)


@dataclass(frozen=True)
class MixedPrecision:
    """Per-layer bits chosen under a size budget (see :mod:`deepshrink.quant.mixed`): the whole
    model must fit ``budget_bytes``; sensitivity by ``criterion`` on the calibration images."""

    budget_bytes: int
    criterion: str = "loss"
    bits_options: tuple[int, ...] = DEFAULT_BITS

    def __post_init__(self) -> None:
        if self.budget_bytes < 1:
            raise UserError(f"the size budget must be positive, got {self.budget_bytes} bytes")
        if self.criterion not in MIXED_CRITERIA:
            raise UserError(f"unknown sensitivity criterion {self.criterion!r}; "
                            f"choose one of: {', '.join(MIXED_CRITERIA)}")


@dataclass(frozen=True)
class QuantizeResult:
    layers: list[str]         # the quantized layers, in module order
    test_top1: float | None   # after quantization (and fine-tuning), when a test set was given
    record: dict[str, Any]    # the history entry written to the model file
    before: Measures | None = None  # the input model and file (top-1 with ``measure_before``)
    after: Measures | None = None   # the output model and file


class _Quantization(Compression):
    """Quantizers (one bit-width, or per layer under a budget) and calibrated activation ranges
    before fine-tuning (QAT / codebook fine-tuning); the record after it."""

    def __init__(self, config: QuantConfig, train_config: TrainConfig, train_set: ImageDataset | None,
                 calibration_images: int, mixed: MixedPrecision | None, source: str):
        self.config, self.train_config, self.train_set = config, train_config, train_set
        self.calibration_images, self.mixed, self.source = calibration_images, mixed, source

    def apply(self, model: nn.Module, info: ModelInfo):
        config, train_config = self.config, self.train_config
        mixed_record = self._quantize(model, info)
        layers = list(quantizers_of(model))
        if not layers:
            raise UserError(f"{self.source}: no Conv2d/Linear layer left to quantize after the exclusions")
        device = resolve_device(train_config.device)
        model.to(device)
        share_codebooks_from_main(model)
        self.record = {"stage": "quantize", **config.to_dict(), "finetune_epochs": train_config.epochs,
                       "layers": layers}
        if mixed_record is not None:
            self.record.update(mixed_record)
            del self.record["bits"]  # per layer, in the assignment
        if config.activation_bits is not None:
            images = self._calibration()
            with step(f"calibrating activation ranges on {len(images)} images"):
                self.record["calibration_images"] = calibrate_on(model, info, images, device,
                                                                 train_config.eval_batch_size)
        return model, info

    def _calibration(self) -> ImageDataset:
        return self.train_set.subset(min(self.calibration_images, len(self.train_set)))

    def _quantize(self, model: nn.Module, info: ModelInfo) -> dict[str, Any] | None:
        """Attach the quantizers; the mixed-precision record, if the bits are chosen per layer."""
        config, mixed = self.config, self.mixed
        if mixed is None:
            quantize_(model, config)
            return None
        assignment, record = plan_mixed_precision(
            model, info, config, mixed.budget_bytes, self._calibration(), bits_options=mixed.bits_options,
            criterion=mixed.criterion, device=self.train_config.device, batch_size=self.train_config.eval_batch_size)
        quantize_mixed_(model.cpu(), _bits_from_main(assignment), config)
        if config.activation_bits is not None:
            attach_activation_quantizers(model, list(assignment), config.activation_bits, config.activation_observer)
        return record

    def finish(self, model: nn.Module, info: ModelInfo):
        return model, info, self.record


def quantize_job(model_file: str | os.PathLike, out: str | os.PathLike, config: QuantConfig,
                 train_config: TrainConfig, *, train_set: ImageDataset | None = None,
                 test_set: ImageDataset | None = None, run_dir: str | os.PathLike | None = None,
                 resume: bool = False, hooks: Sequence[TrainHook] = (),
                 calibration_images: int = CALIBRATION_IMAGES,
                 mixed: MixedPrecision | None = None, measure_before: bool = False) -> QuantizeResult:
    """Quantize ``model_file``'s weights as ``config`` says and write the model to ``out``.

    With ``train_config.epochs == 0`` this is post-training quantization (no data needed for
    weights only); otherwise the quantized model is fine-tuned for that many epochs on
    ``train_set`` (checkpoints in ``run_dir`` if given; extra ``hooks``, e.g. distillation, take
    part; an early-exit model fine-tunes with its joint exit loss). With
    ``config.activation_bits`` the activation ranges are first calibrated on the first
    ``calibration_images`` images of ``train_set`` (which is then required), normalised as the
    model file says. With ``mixed``, ``config.bits`` is ignored: each layer gets the
    bits that :func:`~deepshrink.quant.mixed.plan_mixed_precision` chooses, its sensitivity
    measured on those same calibration images. The quantizers are kept in the output.

    Under torchrun, k-means codebooks and calibrated ranges are rank 0's on every rank.
    ``measure_before``: also the test accuracy of the input model.
    """
    if config.activation_bits is not None or mixed is not None:
        if train_set is None:
            raise UserError(f"{'quantizing activations' if mixed is None else 'mixed precision'} "
                            "needs calibration images: give the training data")
        if isinstance(calibration_images, bool) or not isinstance(calibration_images, int) or calibration_images < 1:
            raise UserError(f"calibration images must be an integer >= 1, got {calibration_images!r}")
    quantization = _Quantization(config, train_config, train_set, calibration_images, mixed, str(model_file))
    data = FinetuneData(train_set, test_set, run_dir, resume, tuple(hooks))
    outcome = run_compression(model_file, out, quantization, train_config, data, measure_before=measure_before)
    return QuantizeResult(outcome.record["layers"], outcome.test_top1, outcome.record, outcome.before, outcome.after)


def calibrate_on(model: nn.Module, info: ModelInfo, images: ImageDataset, device: torch.device,
                 batch_size: int = 500) -> int:
    """Calibrate ``model``'s activation quantizers on ``images`` (every image, in order, no
    augmentation, normalised with ``info.input``'s mean/std as evaluation does); under torchrun
    every rank then takes rank 0's ranges. Returns the number of images used."""
    loader = BatchLoader(images, batch_size, mean=info.input.mean, std=info.input.std, device=device)
    seen = calibrate_activations(model, loader)
    _share_from_main(_activation_tensors(model))
    return seen


def share_codebooks_from_main(model: nn.Module) -> None:
    """Under torchrun, give every k-means quantizer rank 0's centroids and indices (clustering
    may round differently on each rank); nothing to do in a single process."""
    found = {}
    for name, quantizer in quantizers_of(model).items():
        if isinstance(quantizer, KMeansQuantizer):
            found[f"{name}.centroids"], found[f"{name}.indices"] = quantizer.centroids.data, quantizer.indices
    _share_from_main(found)


def _bits_from_main(assignment: dict[str, int]) -> dict[str, int]:
    """Under torchrun, rank 0's bit assignment on every rank (sensitivities measured on each
    rank may round differently); the assignment itself in a single process."""
    bits = {name: torch.tensor(value) for name, value in assignment.items()}
    _share_from_main(bits)
    return {name: int(value) for name, value in bits.items()}


def _activation_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every buffer of every activation quantizer (observer range and count, scale, zero point)."""
    return {f"{name}.{key}": buffer for name, quantizer in activation_quantizers_of(model).items()
            for key, buffer in quantizer.named_buffers()}


@torch.no_grad()
def _share_from_main(tensors: dict[str, torch.Tensor]) -> None:
    """Overwrite ``tensors`` in place with rank 0's values (nothing to do in a single process)."""
    if not current().active:
        return
    for name, shared in broadcast_from_main(tensors).items():
        tensors[name].copy_(shared)
