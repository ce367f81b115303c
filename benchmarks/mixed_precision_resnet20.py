"""Benchmark: mixed-precision weight quantization of the pretrained ResNet-20 against uniform
bit-widths of the same size (post-training, no fine-tuning; first conv and classifier float).

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/mixed_precision_resnet20.py \
        --data-dir ../shared/data --out mixed_precision_resnet20.json

Per-layer sensitivity on a seeded 1000-image subset of the CIFAR-10 *training* set at bits
{2, 3, 4, 5, 6, 8}: the increase of the mean cross-entropy with only that layer quantized
("loss"), and the Hutchinson-Hessian estimate ("hessian", 4 probes). Budgets: the model sizes
(deepshrink.quant.mixed's size model) of uniform 3-bit and uniform 4-bit quantization; each
is given to the knapsack, and uniform and mixed are compared by top-1 on the full test set.
Prints a Markdown table; writes everything (sensitivities included) as JSON to --out.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from deepshrink.data import BatchLoader
from deepshrink.files import atomic_write_text
from deepshrink.models import load_model
from deepshrink.pipeline.datasets import load_split
from deepshrink.pipeline.evaluate import accuracy_on
from deepshrink.pipeline.import_pretrained import import_pretrained_job
from deepshrink.quant import QuantConfig
from deepshrink.models.attach import copy_model
from deepshrink.quant.mixed import (assign_bits, float_bytes_besides, hessian_sensitivity, layer_sensitivity,
                                    layer_size_options, mixed_layers, model_size_bytes, quantize_mixed_)
from deepshrink.train import evaluate

BITS = (2, 3, 4, 5, 6, 8)
METHODS = {"linear": QuantConfig("linear", per_channel=True),  # asymmetric, per output channel
           "kmeans": QuantConfig("kmeans")}
UNIFORM_BUDGETS = (3, 4)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default="../shared/data")
    p.add_argument("--out", required=True, help="JSON file to write")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--methods", default="linear,kmeans", help="comma-separated: linear, kmeans")
    p.add_argument("--criteria", default="loss,hessian", help="comma-separated: loss, hessian")
    p.add_argument("--calibration-images", type=int, default=1000)
    p.add_argument("--test-images", type=int, default=None, help="first N test images (default: all)")
    p.add_argument("--granularity", type=int, default=64, help="knapsack size unit, bytes")
    args = p.parse_args()
    data = Path(args.data_dir)
    checkpoints = sorted(data.glob("pretrained/resnet20-*.th"))
    if not (data / "cifar10_test.npz").is_file() or not (data / "cifar10_train.npz").is_file() or not checkpoints:
        print(f"skipped: CIFAR-10 npz files and pretrained/resnet20-*.th not found under {data}")
        return
    torch.set_num_threads(args.threads)
    test_set = load_split("cifar10", "test", args.data_dir, args.test_images)
    train_set = load_split("cifar10", "train", args.data_dir)
    picks = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(0))[:args.calibration_images]
    calibration = train_set.subset(picks)
    del train_set

    with tempfile.TemporaryDirectory() as work:
        model_file = Path(work, "r20.safetensors")
        import_pretrained_job("resnet20", checkpoints[0], model_file)
        model, info = load_model(model_file)

    def calibration_batches() -> BatchLoader:
        return BatchLoader(calibration, 500, mean=info.input.mean, std=info.input.std)

    def minus_loss(candidate: torch.nn.Module) -> float:
        with torch.nn.utils.parametrize.cached():
            return -evaluate(candidate, calibration_batches()).loss

    def test_top1(assignment: dict[str, int], config: QuantConfig) -> float:
        return accuracy_on(quantize_mixed_(copy_model(model), assignment, config), info, test_set, "cpu")

    float_top1 = accuracy_on(model, info, test_set, "cpu")
    report = {"model": "resnet20", "calibration_images": len(calibration), "bits_options": list(BITS),
              "granularity": args.granularity, "float_top1": float_top1,
              "float_size_bytes": model_size_bytes(model, {}, METHODS["linear"]), "methods": {}}
    rows = []
    for method in args.methods.split(","):
        config = METHODS[method]
        layers = list(mixed_layers(model, config))
        sizes = layer_size_options(model, layers, BITS, config)
        fixed = float_bytes_besides(model, layers)
        entry = report["methods"][method] = {"config": config.to_dict(), "sizes": sizes, "criteria": {}, "uniform": {}}
        for bits in UNIFORM_BUDGETS:
            uniform = {name: bits for name in layers}
            started = time.time()
            entry["uniform"][bits] = {"size_bytes": model_size_bytes(model, uniform, config),
                                      "test_top1": test_top1(uniform, config)}
            log(f"{method} uniform {bits}-bit: {100 * entry['uniform'][bits]['test_top1']:.2f}% "
                f"({time.time() - started:.0f} s)")
        for criterion in args.criteria.split(","):
            started = time.time()
            if criterion == "loss":
                sensitivity = layer_sensitivity(model, layers, BITS, minus_loss, config)
            else:
                sensitivity = hessian_sensitivity(model, layers, BITS, config, calibration_batches(), probes=4)
            log(f"{method} {criterion} sensitivity: {time.time() - started:.0f} s")
            results = entry["criteria"][criterion] = {"seconds": time.time() - started,
                                                     "sensitivity": sensitivity, "budgets": {}}
            for bits in UNIFORM_BUDGETS:
                budget = entry["uniform"][bits]["size_bytes"]
                assignment = assign_bits(sensitivity, sizes, budget - fixed, granularity=args.granularity)
                mixed = {"assignment": assignment, "size_bytes": model_size_bytes(model, assignment, config),
                         "test_top1": test_top1(assignment, config)}
                results["budgets"][bits] = mixed
                log(f"{method} {criterion} at the {bits}-bit budget: {100 * mixed['test_top1']:.2f}%")
                rows.append((method, criterion, bits, budget, entry["uniform"][bits]["test_top1"], mixed))

    atomic_write_text(args.out, json.dumps(report, indent=1) + "\n")
    print(f"float32: {100 * float_top1:.2f}%, {report['float_size_bytes'] / 1024:.1f} KiB\n")
    print("| method | criterion | budget (= uniform) | budget KiB | uniform top-1 | mixed top-1 | mixed KiB | mixed bits (layer order) |")
    print("|---|---|---|---:|---:|---:|---:|---|")
    for method, criterion, bits, budget, uniform_top1, mixed in rows:
        shown = " ".join(str(b) for b in mixed["assignment"].values())
        print(f"| {method} | {criterion} | {bits}-bit | {budget / 1024:.1f} | {100 * uniform_top1:.2f}% "
              f"| {100 * mixed['test_top1']:.2f}% | {mixed['size_bytes'] / 1024:.1f} | {shown} |")


if __name__ == "__main__":
    main()
