"""Benchmark: real int8 execution of ResNet-20 in ONNX Runtime against float32.

    .venv/bin/python benchmarks/int8_resnet20.py --data-dir ../shared/data --threads 2

Imports the published ResNet-20, exports it as float32 ONNX and as int8 QDQ ONNX (activation
ranges calibrated on 512 training images, first conv and classifier kept float), and measures
top-1 on the full CIFAR-10 test set and the median latency at batch 1 and 128 of: PyTorch
float32, ONNX Runtime float32, ONNX Runtime int8. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from deepshrink.analysis import measure_latency
from deepshrink.data import BatchLoader
from deepshrink.models import load_model
from deepshrink.pipeline.datasets import load_split
from deepshrink.pipeline.export import export_job
from deepshrink.pipeline.import_pretrained import import_pretrained_job
from deepshrink.quant.onnx_export import load_onnx
from deepshrink.train import evaluate


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default="../shared/data")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=30)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    checkpoint = next(Path(args.data_dir, "pretrained").glob("resnet20-*.th"))
    test_set = load_split("cifar10", "test", args.data_dir)
    calibration = load_split("cifar10", "train", args.data_dir, 512)
    with tempfile.TemporaryDirectory() as work:
        model_file = Path(work, "r20.safetensors")
        import_pretrained_job("resnet20", checkpoint, model_file)
        export_job(model_file, "onnx", Path(work, "r20.onnx"))
        export_job(model_file, "int8-onnx", Path(work, "r20-int8.onnx"), calibration_set=calibration)
        torch_model, info = load_model(model_file)
        candidates = [("PyTorch float32", torch_model, model_file),
                      ("ONNX Runtime float32", load_onnx(Path(work, "r20.onnx"), args.threads)[0], Path(work, "r20.onnx")),
                      ("ONNX Runtime int8", load_onnx(Path(work, "r20-int8.onnx"), args.threads)[0], Path(work, "r20-int8.onnx"))]
        rows = []
        for name, model, path in candidates:
            loader = BatchLoader(test_set, 500, mean=info.input.mean, std=info.input.std)
            top1 = evaluate(model, loader).top1
            lat = {b: measure_latency(model, info.input.shape, batch=b, threads=args.threads,
                                      repeats=args.repeats).latency_ms for b in (1, 128)}
            rows.append((name, top1, lat[1], lat[128], path.stat().st_size))
    base = rows[0]
    print(f"| engine | top-1 | batch 1 ms | batch 128 ms | speed-up at 128 vs PyTorch fp32 | file bytes |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, top1, l1, l128, size in rows:
        print(f"| {name} | {100 * top1:.2f}% | {l1:.2f} | {l128:.1f} | {base[3] / l128:.2f}x | {size:,} |")


if __name__ == "__main__":
    main()
