"""``deepshrink demo``: the embedded default job (digits CNN on scikit-learn's digits)."""

from __future__ import annotations

import argparse

from deepshrink.cli.args import positive_int
from deepshrink.pipeline.demo import run_demo


def register(sub) -> None:
    p = sub.add_parser("demo", help="train the small CNN on the bundled digits set", description=__doc__)
    p.add_argument("--out", default="runs/demo", metavar="DIR")
    p.add_argument("--epochs", type=positive_int, help="training epochs (default: the demo's)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    result = run_demo(args.out, epochs=args.epochs)
    print(f"digits-cnn on scikit-learn digits: {result.train_images} train / {result.test_images} test images, "
          f"{result.params:,} parameters, {result.epochs} epochs")
    print(f"test top-1 {100 * result.top1:.2f}%  ({result.seconds:.1f} s)")
    print(f"model written to {result.model_path}")
    return 0
