"""``deepshrink early-exit-sweep``: accuracy against average MACs per image of an early-exit model
file (from ``train --early-exits``) as the exit threshold varies."""

from __future__ import annotations

import argparse

from deepshrink.cli.args import add_builder_args, add_data_args, positive_int, print_json, set_threads
from deepshrink.models.early_exit import CRITERIA
from deepshrink.pipeline.datasets import load_split
from deepshrink.pipeline.early_exit import early_exit_sweep, format_sweep


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def register(sub) -> None:
    p = sub.add_parser("early-exit-sweep", help="accuracy vs MACs of an early-exit model over exit thresholds",
                       description=__doc__)
    p.add_argument("model_file", metavar="MODEL_FILE", help="a model file with early exits")
    add_data_args(p)
    p.add_argument("--rule", choices=CRITERIA, default="confidence",
                   help="leave at the first exit whose max softmax probability >= threshold (confidence), "
                        "or whose entropy in nats <= threshold (entropy)")
    p.add_argument("--thresholds", type=_number, nargs="+", metavar="T",
                   help="confidence in [0, 1] or entropy in [0, ln classes] (default: a spread of them)")
    p.add_argument("--batch-size", type=positive_int, default=500, help="evaluation batch size")
    p.add_argument("--limit-test", "--limit", dest="limit", type=positive_int, metavar="N",
                   help="use only the first N test images (--limit: the older spelling)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1, ...")
    p.add_argument("--threads", type=positive_int, help="CPU threads for torch (default: torch's own choice)")
    p.add_argument("--plot", metavar="FILE.png", help="also write accuracy against MACs as a PNG")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_builder_args(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    set_threads(args.threads)
    dataset = load_split(args.data, "test", args.data_dir, args.limit)
    result = early_exit_sweep(args.model_file, dataset, rule=args.rule, thresholds=args.thresholds,
                              batch_size=args.batch_size, device=args.device, plot=args.plot)
    if args.json:
        print_json(result)
    else:
        print(format_sweep(result))
        if args.plot:
            print(f"plot written to {args.plot}")
    return 0
