"""``deepshrink prune``: fine-grained pruning of a model file, optionally with fine-tuning."""

from __future__ import annotations

import argparse

from deepshrink.cli.args import (add_data_args, add_distill_args, distill_hooks, nonneg_float, nonneg_int, positive_float, positive_int,
                                 set_threads, unit_interval)
from deepshrink.errors import UserError
from deepshrink.pipeline.datasets import load_split
from deepshrink.pipeline.prune import PruneSettings, prune_job
from deepshrink.prune.criteria import CRITERIA, SCOPES
from deepshrink.prune.schedules import SCHEDULES
from deepshrink.train import TrainConfig


def register(sub) -> None:
    p = sub.add_parser("prune", help="prune individual weights of a model file", description=__doc__)
    p.add_argument("model_file", metavar="MODEL_FILE")
    p.add_argument("--criterion", choices=CRITERIA, default="magnitude")
    amount = p.add_mutually_exclusive_group(required=True)
    amount.add_argument("--sparsity", type=unit_interval, metavar="Q",
                        help="fraction of weights to prune, in [0, 1) (magnitude, random)")
    amount.add_argument("--std-factor", type=nonneg_float, metavar="S",
                        help="prune |w| < S * std(w) (criterion std)")
    p.add_argument("--scope", choices=SCOPES, default="layer",
                   help="layer: the same sparsity in every layer; global: one threshold over all")
    p.add_argument("--schedule", choices=SCHEDULES, default="oneshot")
    p.add_argument("--epochs", type=nonneg_int, default=0,
                   help="fine-tuning epochs (0: prune only, no data needed)")
    p.add_argument("--prune-epochs", type=positive_int, metavar="E",
                   help="linear/agp: ramp up over the first E epochs (default: half of --epochs)")
    p.add_argument("--exclude", nargs="+", default=[], metavar="GLOB",
                   help="layer names (fnmatch globs) to leave dense, besides the first and last layer")
    p.add_argument("--prune-first-last", action="store_true",
                   help="prune the first convolution and the classifier too")
    add_data_args(p, required=False)
    p.add_argument("--out", required=True, metavar="MODEL_FILE", help="where to write the pruned model")
    p.add_argument("--run-dir", metavar="DIR", help="checkpoints and metrics of the fine-tuning (resumable)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted fine-tuning in --run-dir")
    p.add_argument("--lr", type=positive_float, default=0.01)
    p.add_argument("--batch-size", type=positive_int, default=128)
    p.add_argument("--momentum", type=unit_interval, default=0.9)
    p.add_argument("--weight-decay", type=nonneg_float, default=5e-4)
    p.add_argument("--seed", type=nonneg_int, default=0)
    p.add_argument("--limit-train", type=positive_int, metavar="N", help="use only the first N training images")
    p.add_argument("--limit-test", type=positive_int, metavar="N", help="use only the first N test images")
    add_distill_args(p)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=positive_int)
    p.set_defaults(run=run)


def _settings(args: argparse.Namespace) -> PruneSettings:
    if (args.criterion == "std") != (args.std_factor is not None):
        raise UserError("--criterion std takes --std-factor S; magnitude and random take --sparsity Q")
    amount = args.std_factor if args.criterion == "std" else args.sparsity
    return PruneSettings(amount, args.criterion, args.scope, args.schedule, args.prune_epochs,
                         tuple(args.exclude), not args.prune_first_last, args.seed)


def run(args: argparse.Namespace) -> int:
    set_threads(args.threads)
    settings = _settings(args)
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, momentum=args.momentum,
                         weight_decay=args.weight_decay, seed=args.seed, device=args.device)
    if args.resume and args.run_dir is None:
        raise UserError("--resume needs --run-dir")
    if args.epochs and args.data is None:
        raise UserError("fine-tuning (--epochs > 0) needs --data")
    if args.teacher and not args.epochs:
        raise UserError("--teacher distils during fine-tuning: give --epochs > 0")
    train_set = load_split(args.data, "train", args.data_dir, args.limit_train) if args.epochs else None
    test_set = load_split(args.data, "test", args.data_dir, args.limit_test) if args.data else None
    result = prune_job(args.model_file, args.out, settings, config, train_set=train_set, test_set=test_set,
                       run_dir=args.run_dir, resume=args.resume,
                       hooks=distill_hooks(args, train_set) if train_set is not None else [])
    width = max(len(name) for name in result.layer_sparsity)
    for name, sparsity in result.layer_sparsity.items():
        print(f"{name:<{width}}  {100 * sparsity:6.2f}% pruned")
    shown = f", test top-1 {100 * result.test_top1:.2f}%" if result.test_top1 is not None else ""
    print(f"pruned layers: {100 * result.sparsity:.2f}% sparse{shown}")
    print(f"model written to {args.out}")
    return 0
