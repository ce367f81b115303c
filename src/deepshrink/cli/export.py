"""``deepshrink export``: a model file as ONNX, int8 ONNX (real int8 execution in ONNX Runtime),
OpenVINO IR (float32 or int8, ``--out MODEL.xml``; needs the ``openvino`` extra) or a
half-precision model file. An exported ``.onnx`` file (float or int8) converts to OpenVINO IR
with ``--format openvino``."""

from __future__ import annotations

import argparse
from pathlib import Path

from deepshrink.cli.args import add_builder_args, add_data_args, positive_int
from deepshrink.pipeline.datasets import load_split
from deepshrink.pipeline.export import ALL_FORMATS, INT8_FORMATS, export_job
from deepshrink.quant.int8 import CALIBRATION_METHODS


def register(sub) -> None:
    p = sub.add_parser("export", help="export to ONNX, int8 ONNX, OpenVINO IR, fp16 or bf16", description=__doc__)
    p.add_argument("model_file", metavar="MODEL_FILE", help="a model file (or an exported .onnx for --format openvino)")
    p.add_argument("--format", required=True, choices=ALL_FORMATS)
    p.add_argument("--out", required=True, metavar="FILE", help="the OpenVINO formats write FILE.xml and FILE.bin")
    add_data_args(p, required=False)
    p.add_argument("--calibration-images", type=positive_int, default=512, metavar="N",
                   help="training images used to calibrate int8 activation ranges")
    p.add_argument("--calibration", choices=CALIBRATION_METHODS, default="minmax")
    p.add_argument("--recalibrate", action="store_true",
                   help="int8 formats: ignore the model's own weight and activation quantizers and let "
                        "ONNX Runtime calibrate every int8 tensor")
    p.add_argument("--reduce-range", action="store_true",
                   help="int8 formats: hold int8 weights to [-64, 64] (7 bits), for x86 CPUs without VNNI "
                        "whose uint8 x int8 kernels saturate on full-range weights")
    p.add_argument("--keep-float", nargs="*", metavar="MODULE",
                   help="modules left in float32 (default: first conv and last classifier)")
    add_builder_args(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    calibration = None
    if args.format in INT8_FORMATS and args.data:
        calibration = load_split(args.data, "train", args.data_dir, args.calibration_images)
    path = export_job(args.model_file, args.format, args.out, calibration_set=calibration,
                      calibration_method=args.calibration, keep_float=args.keep_float,
                      use_model_quantizers=not args.recalibrate, reduce_range=args.reduce_range)
    before, after = Path(args.model_file).stat().st_size, _size(path)
    written = f"{path} + {path.with_suffix('.bin').name}" if path.suffix == ".xml" else str(path)
    print(f"wrote {written} ({args.format}): {after:,} bytes (input file: {before:,} bytes)")
    return 0


def _size(path: Path) -> int:
    """Bytes of an exported file; for OpenVINO IR, of the .xml and the .bin together."""
    weights = path.with_suffix(".bin")
    return path.stat().st_size + (weights.stat().st_size if path.suffix == ".xml" and weights.is_file() else 0)
