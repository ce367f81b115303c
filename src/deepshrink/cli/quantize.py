"""``deepshrink quantize``: linear (fixed-point) or k-means quantization of a model file's
weights, optionally fine-tuned (QAT / codebook fine-tuning)."""

from __future__ import annotations

import argparse

from deepshrink.cli.args import (add_data_args, nonneg_float, nonneg_int, positive_float, positive_int,
                                 print_json, set_threads, unit_interval)
from deepshrink.errors import UserError
from deepshrink.pipeline.datasets import load_split
from deepshrink.pipeline.quantize import quantize_job
from deepshrink.quant import INITS, METHODS, QuantConfig
from deepshrink.train import TrainConfig


def register(sub) -> None:
    p = sub.add_parser("quantize", help="quantize the weights of a model file", description=__doc__)
    p.add_argument("model_file", metavar="MODEL_FILE")
    p.add_argument("--method", choices=METHODS, required=True,
                   help="linear: fixed-point levels; kmeans: a shared codebook of 2^B centroids per layer")
    p.add_argument("--bits", type=nonneg_int, required=True, metavar="B",
                   help="bits per weight: 2..8 (linear also 16)")
    p.add_argument("--symmetric", action="store_true", help="linear: levels symmetric around zero")
    p.add_argument("--per-channel", action="store_true", help="linear: one scale per output channel")
    p.add_argument("--init", choices=INITS, default="linear", help="kmeans: centroid initialisation")
    p.add_argument("--finetune-epochs", type=nonneg_int, default=0,
                   help="QAT / codebook fine-tuning epochs (0: quantize only, no data needed)")
    p.add_argument("--exclude", nargs="+", default=[], metavar="GLOB",
                   help="layer names (fnmatch globs) to keep float, besides the first and last layer")
    p.add_argument("--quantize-first-last", action="store_true",
                   help="quantize the first convolution and the classifier too")
    add_data_args(p, required=False)
    p.add_argument("--out", required=True, metavar="MODEL_FILE", help="where to write the quantized model")
    p.add_argument("--run-dir", metavar="DIR", help="checkpoints and metrics of the fine-tuning (resumable)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted fine-tuning in --run-dir")
    p.add_argument("--lr", type=positive_float, default=0.01)
    p.add_argument("--batch-size", type=positive_int, default=128)
    p.add_argument("--momentum", type=unit_interval, default=0.9)
    p.add_argument("--weight-decay", type=nonneg_float, default=5e-4)
    p.add_argument("--seed", type=nonneg_int, default=0)
    p.add_argument("--limit-train", type=positive_int, metavar="N", help="use only the first N training images")
    p.add_argument("--limit-test", type=positive_int, metavar="N", help="use only the first N test images")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=positive_int)
    p.add_argument("--json", action="store_true", help="print the history record as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    set_threads(args.threads)
    config = QuantConfig(args.method, args.bits, args.symmetric, args.per_channel, args.init,
                         tuple(args.exclude), not args.quantize_first_last, args.seed)
    train_config = TrainConfig(epochs=args.finetune_epochs, batch_size=args.batch_size, lr=args.lr,
                               momentum=args.momentum, weight_decay=args.weight_decay, seed=args.seed,
                               device=args.device)
    if args.resume and args.run_dir is None:
        raise UserError("--resume needs --run-dir")
    if args.finetune_epochs and args.data is None:
        raise UserError("fine-tuning (--finetune-epochs > 0) needs --data")
    train_set = load_split(args.data, "train", args.data_dir, args.limit_train) if args.finetune_epochs else None
    test_set = load_split(args.data, "test", args.data_dir, args.limit_test) if args.data else None
    result = quantize_job(args.model_file, args.out, config, train_config, train_set=train_set,
                          test_set=test_set, run_dir=args.run_dir, resume=args.resume)
    if args.json:
        print_json(result.record)
        return 0
    print(f"{args.method} {args.bits}-bit weights in {len(result.layers)} layers: {', '.join(result.layers)}")
    if result.test_top1 is not None:
        print(f"test top-1 {100 * result.test_top1:.2f}%")
    print(f"model written to {args.out}")
    return 0
