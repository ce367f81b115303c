"""``deepshrink import-pretrained``: a published CIFAR ResNet checkpoint -> a model file."""

from __future__ import annotations

import argparse

from deepshrink.pipeline.import_pretrained import import_pretrained_job

PRETRAINED_MODELS = ("resnet20", "resnet32", "resnet44", "resnet56", "resnet110")


def register(sub) -> None:
    p = sub.add_parser("import-pretrained", help="import a pretrained CIFAR ResNet checkpoint",
                       description=__doc__)
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="e.g. ../shared/data/pretrained/resnet20-12fca82f.th")
    p.add_argument("--model", required=True, choices=PRETRAINED_MODELS)
    p.add_argument("--out", required=True, metavar="MODEL_FILE")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    info = import_pretrained_job(args.model, args.checkpoint, args.out)
    print(f"imported {args.checkpoint} as {info.arch.name} -> {args.out}")
    return 0
