"""``deepshrink bench``: CPU inference latency of a model file, ``.dsz``, ``.onnx`` or OpenVINO
``.xml`` file on one engine (median and p10/p90 after warm-up). Run one engine per process."""

from __future__ import annotations

import argparse

from deepshrink.cli.args import add_builder_args, nonneg_int, positive_int, print_json
from deepshrink.pipeline.bench import ENGINES, bench_model_file


def register(sub) -> None:
    p = sub.add_parser("bench", help="measure inference latency", description=__doc__)
    p.add_argument("model_file", metavar="MODEL_FILE")
    p.add_argument("--batch", type=positive_int, default=1, help="images per forward pass")
    p.add_argument("--engine", choices=ENGINES,
                   help="default: onnxruntime for .onnx, openvino for .xml, torch otherwise; a model file "
                        "runs in onnxruntime/openvino through its float32 ONNX export (openvino needs the "
                        "openvino extra)")
    p.add_argument("--threads", type=positive_int, help="intra-op threads of the engine (default: torch's)")
    p.add_argument("--warmup", type=nonneg_int, default=5)
    p.add_argument("--repeats", type=positive_int, default=30)
    p.add_argument("--optimize", action="store_true",
                   help="same as --engine torch-optimized: BatchNorm folded into the convolutions, "
                        "channels-last weights")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_builder_args(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    result = bench_model_file(args.model_file, batch=args.batch, threads=args.threads,
                              warmup=args.warmup, repeats=args.repeats, optimize=args.optimize,
                              engine=args.engine)
    if args.json:
        print_json(result)
    else:
        print(f"{result['model']} on {result['engine']} {result['engine_version']}: "
              f"batch {result['batch']}, {result['threads']} threads: "
              f"{result['latency_ms']:.3f} ms median (p10 {result['p10_ms']:.3f}, p90 {result['p90_ms']:.3f}), "
              f"{result['images_per_s']:.1f} images/s over {result['repeats']} runs")
    return 0
