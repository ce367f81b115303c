"""The quantize job: load a model file, quantize its weights (optionally fine-tuning: QAT for
linear quantization, codebook fine-tuning for k-means), save it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from deepshrink.data import ImageDataset
from deepshrink.errors import UserError
from deepshrink.models import save_model
from deepshrink.pipeline.datasets import open_for_finetune
from deepshrink.pipeline.evaluate import accuracy_on
from deepshrink.quant import QuantConfig, quantize_, quantizers_of
from deepshrink.train import Trainer, TrainConfig, TrainHook
from deepshrink.train.distributed import current


@dataclass(frozen=True)
class QuantizeResult:
    layers: list[str]         # the quantized layers, in module order
    test_top1: float | None   # after quantization (and fine-tuning), when a test set was given
    record: dict[str, Any]    # the history entry written to the model file


def quantize_job(model_file: str | os.PathLike, out: str | os.PathLike, config: QuantConfig,
                 train_config: TrainConfig, *, train_set: ImageDataset | None = None,
                 test_set: ImageDataset | None = None, run_dir: str | os.PathLike | None = None,
                 resume: bool = False, hooks: Sequence[TrainHook] = ()) -> QuantizeResult:
    """Quantize ``model_file``'s weights as ``config`` says and write the model to ``out``.

    With ``train_config.epochs == 0`` this is post-training quantization (no data needed);
    otherwise the quantized model is fine-tuned for that many epochs on ``train_set``
    (checkpoints in ``run_dir`` if given; extra ``hooks``, e.g. distillation, take part). The
    quantizers are kept in the output.
    """
    model, info = open_for_finetune(model_file, train_config.epochs, train_config.device, train_set, test_set)
    torch.manual_seed(train_config.seed)
    quantize_(model, config)
    layers = list(quantizers_of(model))
    if not layers:
        raise UserError(f"{model_file}: no Conv2d/Linear layer left to quantize after the exclusions")
    test_top1 = None
    if train_config.epochs:
        trainer = Trainer(model, train_set, test_set, train_config, out_dir=run_dir, info=info, hooks=hooks)
        final = trainer.fit(resume=resume).final
        model, info = trainer.model, trainer.info
        test_top1 = final.top1 if final is not None else None
    elif test_set is not None:
        test_top1 = accuracy_on(model, info, test_set, train_config.device, train_config.eval_batch_size)
    record = {"stage": "quantize", **config.to_dict(), "finetune_epochs": train_config.epochs, "layers": layers}
    if test_top1 is not None:
        record["test_top1"] = test_top1
    info.history.append(record)
    if current().is_main:  # under torchrun only rank 0 writes
        save_model(out, model.cpu(), info)
    return QuantizeResult(layers, test_top1, record)
