"""``deepshrink encode``: write a model file as a compressed ``.dsz`` file and account for its bytes."""

from __future__ import annotations

import argparse

from deepshrink.cli.args import add_builder_args
from deepshrink.codec import codec_report, encode_file, format_codec_report


def register(sub) -> None:
    p = sub.add_parser("encode", help="compress a model file into a .dsz file", description=__doc__)
    p.add_argument("model_file", metavar="MODEL_FILE")
    p.add_argument("--out", required=True, metavar="DSZ_FILE", help="the .dsz file to write")
    p.add_argument("--float16", action="store_true",
                   help="store BatchNorm parameters, biases and unquantized weights as float16 "
                        "(smaller; outputs no longer bit-identical)")
    p.add_argument("--bn-affine", action="store_true",
                   help="store each BatchNorm as its inference scale and shift, without running statistics "
                        "(half its bytes; outputs equal within float rounding)")
    add_builder_args(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    encoded = encode_file(args.model_file, args.out, float_dtype="float16" if args.float16 else "float32",
                          bn_affine=args.bn_affine)
    print(format_codec_report(codec_report(encoded)))
    print(f"written to {args.out}")
    return 0
