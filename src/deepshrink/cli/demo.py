"""``deepshrink demo``: the whole pipeline on the bundled digits set (train, prune, quantize,
encode to .dsz, decode, check)."""

from __future__ import annotations

import argparse

from deepshrink.cli.args import positive_int
from deepshrink.pipeline.demo import run_demo
from deepshrink.pipeline.run_report import format_stage_table


def register(sub) -> None:
    p = sub.add_parser("demo", help="train, prune, quantize and encode a small CNN on the bundled digits set",
                       description=__doc__)
    p.add_argument("--out", default="runs/demo", metavar="DIR")
    p.add_argument("--epochs", type=positive_int, help="cap every training stage at N epochs (default: the recipe's)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    result = run_demo(args.out, epochs=args.epochs)
    run_result, quantized, encoded = result.run, result.quantized, result.encoded
    print(f"digits-cnn on scikit-learn digits: {run_result.train_images} train / {run_result.test_images} test "
          f"images; stages: {' -> '.join(record.kind for record in run_result.stages[1:])}")
    print(format_stage_table(run_result.stages))
    verdict = "equals" if result.decoded_matches else "DIFFERS FROM"
    print(f"decoded {result.dsz_path}: test top-1 {100 * encoded.top1:.2f}% {verdict} the quantized model's "
          f"{100 * quantized.top1:.2f}%"
          f" (outputs {'bit-identical' if encoded.details.get('identical_outputs') else 'differ'})")
    baseline = run_result.stages[0].details["float32_bytes"]
    print(f"float32 safetensors {baseline:,} bytes -> .dsz {encoded.bytes:,} bytes: {encoded.ratio:.2f}x smaller "
          f"(every byte counted)  ({result.seconds:.1f} s)")
    print(f"report written to {run_result.report}")
    return 0 if result.decoded_matches else 1
