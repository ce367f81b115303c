"""Benchmark: train ResNet-20 on the real CIFAR-10 and record time per epoch, the
data-loading share of a training step, and the final top-1.

    .venv/bin/python benchmarks/train_resnet20.py --data-dir ../shared/data --epochs 50 --out runs/bench-resnet20

Writes OUT/summary.json and prints a Markdown row for BENCHMARKS.md. Resumable: run the
same command with --resume after an interruption.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from deepshrink.data import BatchLoader
from deepshrink.models import build_model, make_spec
from deepshrink.pipeline.datasets import load_split
from deepshrink.pipeline.train import train_job
from deepshrink.train import TrainConfig


def loading_share(train_set, batch_size: int, repeats: int = 20) -> dict:
    """Median seconds to produce one augmented batch vs one full SGD step of ResNet-20."""
    torch.manual_seed(0)
    model = build_model(make_spec("resnet20")).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loader = BatchLoader(train_set, batch_size, shuffle=True, augment=train_set.augment)
    batches = iter(loader)
    load_times, step_times = [], []
    for _ in range(repeats + 2):
        start = time.perf_counter()
        x, y = next(batches)
        loaded = time.perf_counter()
        loss = F.cross_entropy(model(x.contiguous(memory_format=torch.channels_last)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        done = time.perf_counter()
        load_times.append(loaded - start)
        step_times.append(done - loaded)
    load, step = statistics.median(load_times[2:]), statistics.median(step_times[2:])
    return {"load_ms": 1e3 * load, "step_ms": 1e3 * step, "share": load / (load + step)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default="../shared/data")
    p.add_argument("--out", default="runs/bench-resnet20")
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--schedule", default="cosine")
    p.add_argument("--warmup-epochs", type=float, default=1.0)
    p.add_argument("--label-smoothing", type=float, default=0.0)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    train_set = load_split("cifar10", "train", args.data_dir)
    test_set = load_split("cifar10", "test", args.data_dir)
    share = loading_share(train_set, args.batch_size)
    print(f"data loading: {share['load_ms']:.2f} ms per batch vs step {share['step_ms']:.1f} ms "
          f"-> {100 * share['share']:.1f}% of a step", flush=True)
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                         weight_decay=args.weight_decay, schedule=args.schedule,
                         warmup_epochs=args.warmup_epochs, label_smoothing=args.label_smoothing,
                         seed=args.seed, progress=False)
    _, result = train_job(train_set, test_set, config, model_name="resnet20", out_dir=args.out,
                          resume=args.resume)
    epochs = result.history
    summary = {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
        "config": config.to_dict(),
        "median_epoch_s": statistics.median(r["seconds"] for r in epochs),
        "epoch_data_share": statistics.median(r["data_seconds"] / r["seconds"] for r in epochs),
        "step_loading": share,
        "final_top1": result.final.top1,
        "best_top1": result.best_top1,
        "best_epoch": result.best_epoch,
    }
    Path(args.out, "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    print(f"| ResNet-20 | {args.epochs} | {summary['median_epoch_s']:.1f} s | "
          f"{100 * summary['epoch_data_share']:.1f}% | {100 * result.final.top1:.2f}% |")


if __name__ == "__main__":
    main()
