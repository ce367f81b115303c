"""Benchmark: post-training weight quantization of the pretrained ResNet-20 (no fine-tuning),
full CIFAR-10 test set; first conv and classifier stay float.

    .venv/bin/python benchmarks/quant_resnet20_ptq.py --data-dir ../shared/data
    .venv/bin/python benchmarks/quant_resnet20_ptq.py --model-file pruned.safetensors   # e.g. a 70 %-sparse model

With ``--model-file`` that model file is quantized instead (a pruned model keeps its masks: its
zeros stay zero and out of the ranges and codebooks). Prints a Markdown table of top-1 per
method and bit-width.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from deepshrink.models import load_model
from deepshrink.pipeline.datasets import load_split
from deepshrink.pipeline.evaluate import accuracy_on
from deepshrink.pipeline.import_pretrained import import_pretrained_job
from deepshrink.quant import QuantConfig, quantize_

SETTINGS = [
    ("kmeans", 6, {}), ("kmeans", 5, {}), ("kmeans", 4, {}), ("kmeans", 3, {}),
    ("kmeans", 4, {"init": "density"}), ("kmeans", 4, {"init": "random"}),
    ("linear", 8, {}), ("linear", 6, {}), ("linear", 4, {}), ("linear", 3, {}), ("linear", 2, {}),
    ("linear", 4, {"symmetric": True}), ("linear", 4, {"per_channel": True}),
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default="../shared/data")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--model-file", type=Path, help="quantize this model file instead of the pretrained ResNet-20")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    test_set = load_split("cifar10", "test", args.data_dir)
    with tempfile.TemporaryDirectory() as work:
        model_file = args.model_file or Path(work, "r20.safetensors")
        if args.model_file is None:
            import_pretrained_job("resnet20", next(Path(args.data_dir, "pretrained").glob("resnet20-*.th")), model_file)
        model, info = load_model(model_file)
        print(f"| method | bits | options | top-1 |\n|---|---:|---|---:|\n| float32 | 32 | | {100 * accuracy_on(model, info, test_set):.2f}% |",
              flush=True)
        for method, bits, options in SETTINGS:
            model, info = load_model(model_file)
            quantize_(model, QuantConfig(method=method, bits=bits, **options))
            shown = ", ".join(f"{k}={v}" for k, v in options.items())
            print(f"| {method} | {bits} | {shown} | {100 * accuracy_on(model, info, test_set):.2f}% |", flush=True)


if __name__ == "__main__":
    main()
