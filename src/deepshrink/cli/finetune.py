"""Fine-tuning options shared by the compressing commands (``prune``, ``quantize``)."""

from __future__ import annotations

import argparse

from deepshrink.cli.args import (add_data_args, add_distill_args, distill_hooks, nonneg_float, nonneg_int,
                                 positive_float, positive_int, unit_interval)
from deepshrink.data import ImageDataset
from deepshrink.errors import UserError
from deepshrink.pipeline.datasets import load_split
from deepshrink.progress import step
from deepshrink.train import TrainConfig, TrainHook
from deepshrink.train.config import PRECISIONS


def add_finetune_args(p: argparse.ArgumentParser) -> None:
    """Data, run folder, optimiser settings, distillation, device, precision and threads."""
    add_data_args(p, required=False)
    p.add_argument("--run-dir", metavar="DIR", help="checkpoints and metrics of the fine-tuning (resumable)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted fine-tuning in --run-dir")
    p.add_argument("--lr", type=positive_float, default=0.01, help="fine-tuning learning rate (SGD, cosine schedule)")
    p.add_argument("--batch-size", type=positive_int, default=128, help="fine-tuning batch size (global under torchrun)")
    p.add_argument("--momentum", type=unit_interval, default=0.9, help="SGD momentum")
    p.add_argument("--weight-decay", type=nonneg_float, default=5e-4, help="weight decay")
    p.add_argument("--seed", type=nonneg_int, default=0,
                   help="seed of the batch order, augmentation and random choices (e.g. --criterion random)")
    p.add_argument("--no-augment", action="store_true", help="turn off the dataset's augmentation")
    p.add_argument("--limit-train", type=positive_int, metavar="N", help="use only the first N training images")
    p.add_argument("--limit-test", type=positive_int, metavar="N", help="use only the first N test images")
    add_distill_args(p)
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1, ...")
    p.add_argument("--precision", choices=PRECISIONS, default=TrainConfig.precision,
                   help="fine-tune under autocast to float16 (with dynamic loss scaling) or bfloat16")
    p.add_argument("--threads", type=positive_int, help="CPU threads for torch (default: torch's own choice)")


def finetune_plan(args: argparse.Namespace, epochs: int, epochs_flag: str
                  ) -> tuple[TrainConfig, ImageDataset | None, ImageDataset | None, list[TrainHook]]:
    """(training config, train set, test set, hooks) for ``epochs`` of fine-tuning (0: none).

    The train set is loaded only when fine-tuning; the test set whenever ``--data`` is given.
    """
    if args.resume and args.run_dir is None:
        raise UserError("--resume needs --run-dir")
    if epochs and args.data is None:
        raise UserError(f"fine-tuning ({epochs_flag} > 0) needs --data")
    if args.teacher and not epochs:
        raise UserError(f"--teacher distils during fine-tuning: give {epochs_flag} > 0")
    config = TrainConfig(epochs=epochs, batch_size=args.batch_size, lr=args.lr, momentum=args.momentum,
                         weight_decay=args.weight_decay, seed=args.seed, device=args.device,
                         augment=not args.no_augment, precision=args.precision)
    train_set = load_data(args, "train", args.limit_train) if epochs else None
    test_set = load_data(args, "test", args.limit_test) if args.data else None
    hooks = distill_hooks(args, train_set) if train_set is not None else []
    return config, train_set, test_set, hooks


def load_data(args: argparse.Namespace, split: str, limit: int | None) -> ImageDataset:
    """``split`` of ``--data`` (its first ``limit`` images), reported as a step when it is slow."""
    with step(f"loading {getattr(args.data, 'name', args.data)} {split}"):
        return load_split(args.data, split, args.data_dir, limit)
