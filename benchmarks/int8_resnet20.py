"""Benchmark: real int8 execution of ResNet-20 in ONNX Runtime against float32.

    .venv/bin/python benchmarks/int8_resnet20.py --data-dir ../shared/data --threads 2

Imports the published ResNet-20, exports it as float32 ONNX and as int8 QDQ ONNX (activation
ranges calibrated on 512 training images, first conv and classifier kept float), and measures
top-1 on the full CIFAR-10 test set and the median latency at batch 1 and 128 of: PyTorch
float32, ONNX Runtime float32, ONNX Runtime int8. Prints a Markdown table.

    .venv/bin/python benchmarks/int8_resnet20.py --qat-model r20-w4a8.safetensors [--test-images N]

With ``--qat-model``, takes a quantized model file instead (weight and activation quantizers
from ``deepshrink quantize``, with or without fine-tuning), exports it as int8 ONNX twice (with
the model's own quantization parameters, and recalibrated by ONNX Runtime) and prints top-1 of
the fake-quantized PyTorch model and of both int8 models, and how often each int8 model
predicts the fake-quantized model's class.
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
    p.add_argument("--qat-model", metavar="FILE", help="compare int8 exports of this quantized model file")
    p.add_argument("--test-images", type=int, metavar="N", help="only the first N test images")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    test_set = load_split("cifar10", "test", args.data_dir, args.test_images)
    calibration = load_split("cifar10", "train", args.data_dir, 512)
    if args.qat_model:
        compare_qat_exports(Path(args.qat_model), test_set, calibration, args.threads)
        return
    checkpoint = next(Path(args.data_dir, "pretrained").glob("resnet20-*.th"))
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
    print("| engine | top-1 | batch 1 ms | batch 128 ms | speed-up at 128 vs PyTorch fp32 | file bytes |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, top1, l1, l128, size in rows:
        print(f"| {name} | {100 * top1:.2f}% | {l1:.2f} | {l128:.1f} | {base[3] / l128:.2f}x | {size:,} |")


def compare_qat_exports(model_file: Path, test_set, calibration, threads: int) -> None:
    """Top-1 of the fake-quantized model and of its two int8 exports, and the int8 models'
    agreement with its predictions (Markdown table)."""
    model, info = load_model(model_file)
    loader = BatchLoader(test_set, 500, mean=info.input.mean, std=info.input.std)
    with tempfile.TemporaryDirectory() as work:
        own = export_job(model_file, "int8-onnx", Path(work, "own.onnx"), calibration_set=calibration)
        recalibrated = export_job(model_file, "int8-onnx", Path(work, "recal.onnx"), calibration_set=calibration,
                                  use_model_quantizers=False)
        used = load_onnx(own)[1].history[-1].get("model_quantizers", {})
        print(f"model's parameters used: {len(used.get('weights', []))} weights, "
              f"{len(used.get('activations', []))} activations; left to calibration: "
              f"{used.get('left_to_calibration', {})}\n")
        candidates = [("PyTorch fake-quantized", model.eval()),
                      ("ONNX Runtime int8, model's parameters", load_onnx(own, threads)[0]),
                      ("ONNX Runtime int8, recalibrated", load_onnx(recalibrated, threads)[0])]
        labels = torch.cat([y for _, y in loader])
        with torch.no_grad():
            predictions = [torch.cat([m(x).argmax(1) for x, _ in loader]) for _, m in candidates]
    print("| model | top-1 | same class as fake-quantized |\n|---|---:|---:|")
    for (name, _), predicted in zip(candidates, predictions):
        top1 = (predicted == labels).float().mean()
        agree = (predicted == predictions[0]).float().mean()
        print(f"| {name} | {100 * top1:.2f}% | {100 * agree:.2f}% |")


if __name__ == "__main__":
    main()
