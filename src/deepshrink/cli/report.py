"""``deepshrink report``: what a model file or a ``.dsz`` file holds, layer by layer; for an ``.onnx``
file its size, operator counts and whether it is int8."""

from __future__ import annotations

import argparse

from deepshrink.cli.args import add_builder_args, print_json
from deepshrink.pipeline.report import build_report, format_report


def register(sub) -> None:
    p = sub.add_parser("report", help="per-layer report of a model file or .dsz file; size and operators of an .onnx file", description=__doc__)
    p.add_argument("model_file", metavar="MODEL_FILE", help="a model file, a .dsz file from `deepshrink encode`, or an .onnx file")
    p.add_argument("--costs", action="store_true", help="add MACs, parameters and memory traffic per layer (of the decoded model for a .dsz)")
    p.add_argument("--filters", action="store_true",
                   help="add which image filter (Sobel, Laplacian, average) each first-layer kernel resembles")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    add_builder_args(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    report = build_report(args.model_file, costs=args.costs, filters=args.filters)
    if args.json:
        report.pop("costs_text", None)
        print_json(report)
    else:
        print(format_report(report))
    return 0
