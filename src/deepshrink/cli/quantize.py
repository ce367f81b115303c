"""``deepshrink quantize``: linear (fixed-point) or k-means quantization of a model file's
weights (one bit-width, or per layer under a size budget), optionally with fake-quantized
activations (ranges calibrated on training images), optionally fine-tuned (QAT / codebook
fine-tuning)."""

from __future__ import annotations

import argparse

from deepshrink.cli.args import (add_builder_args, any_int, nonneg_int, positive_float, positive_int, print_json, set_threads)
from deepshrink.cli.finetune import add_finetune_args, finetune_plan, load_data
from deepshrink.cli.summary import accuracy_note, before_after, before_after_table
from deepshrink.errors import UserError
from deepshrink.pipeline.quantize import CALIBRATION_IMAGES, MixedPrecision, budget_bytes, quantize_job
from deepshrink.quant import ACTIVATION_OBSERVERS, INITS, METHODS, QuantConfig
from deepshrink.quant.mixed import CRITERIA as MIXED_CRITERIA
from deepshrink.quant.mixed import DEFAULT_BITS
from deepshrink.train.distributed import current


def register(sub) -> None:
    p = sub.add_parser("quantize", help="quantize the weights of a model file", description=__doc__)
    p.add_argument("model_file", metavar="MODEL_FILE")
    p.add_argument("--method", choices=METHODS, required=True,
                   help="linear: fixed-point levels; kmeans: a shared codebook of 2^B centroids per layer")
    p.add_argument("--bits", type=any_int, metavar="B",
                   help="bits per weight: 2..8 (linear also 16); or --mixed-budget-kb")
    p.add_argument("--mixed-budget-kb", type=positive_float, metavar="K",
                   help="mixed precision: choose each layer's bits so that the whole model (quantized "
                        "weights, their scales or codebooks, everything else float32) fits K KiB; "
                        "needs --data (sensitivity on --calibration-images training images)")
    p.add_argument("--mixed-criterion", choices=MIXED_CRITERIA, default="loss",
                   help="mixed precision: per-layer sensitivity as loss increase (default), top-1 drop, "
                        "or Hessian trace x quantization error")
    p.add_argument("--mixed-bits", type=nonneg_int, nargs="+", default=list(DEFAULT_BITS), metavar="B",
                   help=f"mixed precision: the bit-widths to choose from (default {' '.join(map(str, DEFAULT_BITS))})")
    p.add_argument("--symmetric", action="store_true", help="linear: levels symmetric around zero")
    p.add_argument("--per-channel", action="store_true", help="linear: one scale per output channel")
    p.add_argument("--init", choices=INITS, default="linear", help="kmeans: centroid initialisation")
    p.add_argument("--activation-bits", type=any_int, metavar="A",
                   help="also fake-quantize the inputs of the quantized layers (and ReLU6 outputs) "
                        "to A bits, 2..8 or 16; needs --data for calibration")
    p.add_argument("--observer", choices=ACTIVATION_OBSERVERS,
                   help="activation range: running min/max (default), its moving average, or percentiles")
    p.add_argument("--calibration-images", type=positive_int, metavar="N",
                   help=f"training images that calibrate the activation ranges and measure mixed-precision "
                        f"sensitivity (default {CALIBRATION_IMAGES})")
    p.add_argument("--finetune-epochs", type=nonneg_int, default=0,
                   help="QAT / codebook fine-tuning epochs (0: quantize only, no data needed)")
    p.add_argument("--exclude", nargs="+", default=[], metavar="GLOB",
                   help="layer names (fnmatch globs) to keep float, besides the first and last layer")
    p.add_argument("--quantize-first-last", action="store_true",
                   help="quantize the first convolution and the classifier too")
    p.add_argument("--out", required=True, metavar="MODEL_FILE", help="where to write the quantized model")
    add_finetune_args(p)
    p.add_argument("--json", action="store_true",
                   help="print the history record with the before/after measures as JSON")
    add_builder_args(p)
    p.set_defaults(run=run, config_flags={"exclude_first_last": "--quantize-first-last",
                                          "activation_observer": "--observer"})


def run(args: argparse.Namespace) -> int:
    set_threads(args.threads)
    mixed = _mixed_settings(args)
    if args.activation_bits is None and args.observer is not None:
        raise UserError("--observer applies to --activation-bits")
    if args.activation_bits is None and mixed is None and args.calibration_images is not None:
        raise UserError("--calibration-images applies to --activation-bits and --mixed-budget-kb")
    if args.activation_bits is not None and args.data is None:
        raise UserError("--activation-bits calibrates on training images: give --data")
    bits = max(mixed.bits_options) if mixed is not None else args.bits  # validated; per layer when mixed
    config = QuantConfig(args.method, bits, args.symmetric, args.per_channel, args.init,
                         tuple(args.exclude), not args.quantize_first_last, args.seed,
                         args.activation_bits, args.observer or "minmax")
    train_config, train_set, test_set, hooks = finetune_plan(args, args.finetune_epochs, "--finetune-epochs")
    if (config.activation_bits is not None or mixed is not None) and train_set is None:
        train_set = load_data(args, "train", args.limit_train)
    result = quantize_job(args.model_file, args.out, config, train_config, train_set=train_set,
                          test_set=test_set, run_dir=args.run_dir, resume=args.resume, hooks=hooks,
                          calibration_images=args.calibration_images or CALIBRATION_IMAGES, mixed=mixed,
                          measure_before=True)
    if not current().is_main:
        return 0
    if args.json:
        print_json({**result.record, **before_after(result.before, result.after)})
        return 0
    if mixed is None:
        print(f"{args.method} {args.bits}-bit weights in {len(result.layers)} layers: {', '.join(result.layers)}")
    else:
        record = result.record
        print(f"{args.method} mixed precision ({mixed.criterion} sensitivity): "
              + ", ".join(f"{name} {bits}" for name, bits in record["assignment"].items()))
        print(f"size {record['size_bytes'] / 1024:.1f} KiB of a {record['budget_bytes'] / 1024:.1f} KiB budget "
              f"(float32: {record['float_size_bytes'] / 1024:.1f} KiB)")
    if config.activation_bits is not None:
        print(f"{config.activation_bits}-bit activations ({config.activation_observer} ranges "
              f"from {result.record['calibration_images']} training images)")
    print(before_after_table(result.before, result.after))
    note = accuracy_note(result.before, result.after, args.finetune_epochs, "--finetune-epochs")
    if note:
        print(note)
    print(f"model written to {args.out}")
    return 0


def _mixed_settings(args: argparse.Namespace) -> MixedPrecision | None:
    """The mixed-precision settings, or None for one bit-width (``--bits``)."""
    if args.mixed_budget_kb is None:
        if args.bits is None:
            raise UserError("give --bits B, or --mixed-budget-kb K to choose the bits per layer")
        return None
    if args.bits is not None:
        raise UserError("--bits and --mixed-budget-kb exclude each other: the budget chooses the bits per layer")
    if args.data is None:
        raise UserError("--mixed-budget-kb measures each layer's sensitivity on training images: give --data")
    return MixedPrecision(budget_bytes(args.mixed_budget_kb), args.mixed_criterion, tuple(sorted(set(args.mixed_bits))))
