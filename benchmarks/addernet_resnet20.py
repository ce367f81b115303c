"""Benchmark: AdderNet ResNet-20 against the convolutional ResNet-20, trained briefly the same way.

    .venv/bin/python benchmarks/addernet_resnet20.py                      # synthetic 3x16x16, seconds
    .venv/bin/python benchmarks/addernet_resnet20.py --data cifar10 --data-dir ../shared/data \\
        --limit-train 2000 --limit-test 1000 --epochs 2

The adder model trains with the paper's adaptive learning rate (AdderLearningRate hook).
Prints one JSON object per model (final top-1, seconds per epoch, median forward+backward
milliseconds per image) and a Markdown table. Short runs compare cost, not final accuracy:
AdderNets need far more epochs (the paper trains 400) to approach the CNN.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch
import torch.nn.functional as F

from deepshrink.models import build_model, make_spec
from deepshrink.pipeline.datasets import load_split
from deepshrink.pipeline.train import train_job
from deepshrink.train import TrainConfig
from deepshrink.train.adder_lr import AdderLearningRate


def step_ms_per_image(name: str, shape: tuple[int, int, int], classes: int, batch: int, repeats: int = 3) -> float:
    """Median forward + backward milliseconds per image on random inputs."""
    model = build_model(make_spec(name, num_classes=classes, in_channels=shape[0], image_size=shape[1]))
    x, y = torch.randn(batch, *shape), torch.randint(0, classes, (batch,))
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        F.cross_entropy(model(x), y).backward()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times[1:]) / batch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="synthetic")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--limit-train", type=int, default=None)
    p.add_argument("--limit-test", type=int, default=None)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    train_set = load_split(args.data, "train", args.data_dir, args.limit_train)
    test_set = load_split(args.data, "test", args.data_dir, args.limit_test)
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, progress=False)
    rows = []
    for name, hooks in (("resnet20", []), ("adder-resnet20", [AdderLearningRate()])):
        _, result = train_job(train_set, test_set, config, model_name=name, hooks=hooks)
        row = {"model": name, "data": args.data, "train_images": len(train_set), "epochs": args.epochs,
               "final_top1": result.final.top1,
               "epoch_s": statistics.median(r["seconds"] for r in result.history),
               "step_ms_per_image": step_ms_per_image(name, train_set.image_shape, train_set.num_classes,
                                                      args.batch_size),
               "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"}
        print(json.dumps(row), flush=True)
        rows.append(row)
    print("| model | epochs | top-1 | s / epoch | fwd+bwd ms / image |")
    print("| --- | --- | --- | --- | --- |")
    for row in rows:
        print(f"| {row['model']} | {row['epochs']} | {100 * row['final_top1']:.1f}% | {row['epoch_s']:.1f} | "
              f"{row['step_ms_per_image']:.2f} |")


if __name__ == "__main__":
    main()
