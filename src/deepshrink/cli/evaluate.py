"""``deepshrink eval``: accuracy of a model file on the test split of a dataset."""

from __future__ import annotations

import argparse

from deepshrink.cli.args import add_builder_args, add_data_args, positive_int, print_json, set_threads
from deepshrink.pipeline.datasets import load_split
from deepshrink.pipeline.evaluate import evaluate_model_file


def register(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a model file", description=__doc__)
    p.add_argument("model_file", metavar="MODEL_FILE")
    add_data_args(p)
    p.add_argument("--batch-size", type=positive_int, default=500, help="evaluation batch size")
    p.add_argument("--limit-test", "--limit", dest="limit", type=positive_int, metavar="N",
                   help="use only the first N test images (--limit: the older spelling)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1, ...")
    p.add_argument("--threads", type=positive_int, help="CPU threads for torch (default: torch's own choice)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_builder_args(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    set_threads(args.threads)
    dataset = load_split(args.data, "test", args.data_dir, args.limit)
    result = evaluate_model_file(args.model_file, dataset, batch_size=args.batch_size, device=args.device)
    if args.json:
        print_json(result)
    else:
        print(f"{result['model']} on {result['dataset']} test ({result['examples']} images): "
              f"top-1 {100 * result['top1']:.2f}%  loss {result['loss']:.4f}  "
              f"params {result['params']:,} ({result['nonzero_params']:,} non-zero)")
    return 0
