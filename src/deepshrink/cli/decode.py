"""``deepshrink decode``: read a ``.dsz`` file back into a plain model file."""

from __future__ import annotations

import argparse

from deepshrink.cli.args import add_builder_args
from deepshrink.codec import decode_file


def register(sub) -> None:
    p = sub.add_parser("decode", help="decode a .dsz file into a model file", description=__doc__)
    p.add_argument("dsz_file", metavar="DSZ_FILE")
    p.add_argument("--out", required=True, metavar="MODEL_FILE", help="the model file to write")
    add_builder_args(p, ("dsz_file",))
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    info, path = decode_file(args.dsz_file, args.out)
    print(f"{info.arch.name} decoded from {args.dsz_file}, model written to {path}")
    return 0
