"""Benchmark: structured (filter) pruning of the pretrained CIFAR ResNet-20/56 on the real CIFAR-10.

    .venv/bin/python benchmarks/structured_resnet.py --data-dir ../shared/data --out runs/bench-structured
    .venv/bin/python benchmarks/structured_resnet.py --models resnet56 --settings l1-li-50 \
        --finetune-epochs 20 --schedule linear --distill --threads 1        # resumable: rerun to continue

For each model and setting: test top-1 (full test set) of the dense and the pruned model, with
and (``--finetune-epochs N``) without fine-tuning, parameters, MACs per image, and measured CPU
latency at batch 1 and 128, dense vs pruned; the latency speed-up is compared with the MAC
reduction ratio (dense MACs / pruned MACs); ``--no-latency`` skips the timing (for runs that
share the machine with another job, whose timings would not be reportable). Fine-tuning runs the
library's structured prune job (SGD, cosine from ``--lr``, batch 128), one-shot or on a gradual ``--schedule``, optionally
distilled from the dense model (``--distill``: T = 4, alpha = 0.9); each run checkpoints in
OUT/<model>-<setting>/ and continues from there when the script is run again. Settings:

- ``l1-li-a``: L1 (Li et al. 2017), only the first conv of each block, 10 % of its filters;
- ``l1-li-b``: the same with 60 / 30 / 10 % in stages 1 / 2 / 3;
- ``l1-li-50``: L1, Li et al. rule, uniform ratio found for a 50 % MAC reduction;
- ``fpgm-50``: FPGM, every prunable group, uniform ratio for a 50 % MAC reduction;
- ``global-l1-50``: L1 with one global ranking over every group, 50 % MAC reduction.

Writes OUT/summary.json and prints Markdown rows for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import platform
import time
from pathlib import Path

import torch

from deepshrink.analysis import measure_latency
from deepshrink.data import BatchLoader
from deepshrink.models import load_model
from deepshrink.models.pretrained import PRETRAINED_MEAN, PRETRAINED_STD
from deepshrink.pipeline.datasets import load_split
from deepshrink.pipeline.import_pretrained import import_pretrained_job
from deepshrink.pipeline.structured_prune import structured_prune_job
from deepshrink.prune.schedules import SCHEDULES
from deepshrink.prune.structured import StructuredConfig, prune_channels
from deepshrink.train import DistillationHook, TrainConfig, evaluate

SHAPE = (3, 32, 32)
CHECKPOINTS = {"resnet20": "resnet20-12fca82f.th", "resnet56": "resnet56-4bfd9763.th"}
SETTINGS = {
    "l1-li-a": StructuredConfig("l1", ratio=0.1, li_resnet_rule=True),
    "l1-li-b": StructuredConfig("l1", ratio=0.1, li_resnet_rule=True,
                                  layer_ratios={"layer1.*": 0.6, "layer2.*": 0.3, "layer3.*": 0.1}),
    "l1-li-50": StructuredConfig("l1", target_macs_reduction=0.5, li_resnet_rule=True),
    "fpgm-50": StructuredConfig("fpgm", target_macs_reduction=0.5),
    "global-l1-50": StructuredConfig("l1", target_macs_reduction=0.5, global_ranking=True),
}


def accuracy(model, test_set) -> float:
    loader = BatchLoader(test_set, 500, mean=PRETRAINED_MEAN, std=PRETRAINED_STD)
    return evaluate(model, loader, torch.device("cpu")).top1


def latency(model, threads: int) -> dict:
    """Median ms per batch at batch 1 and 128."""
    return {f"batch{b}_ms": measure_latency(model, SHAPE, batch=b, threads=threads, warmup=w,
                                            repeats=r).latency_ms
            for b, w, r in ((1, 20, 100), (128, 2, 7))}


def fine_tune(dense_file: Path, settings: StructuredConfig, train_set, test_set, args, out_dir: Path):
    """The structured prune job with ``args.finetune_epochs`` of fine-tuning: (model, its history record)."""
    config = TrainConfig(epochs=args.finetune_epochs, batch_size=128, lr=args.lr, weight_decay=args.weight_decay,
                         schedule="cosine", progress=False)
    teacher = load_model(dense_file)[0] if args.distill else None
    hooks = [DistillationHook(teacher, 4.0, 0.9, teacher_name=dense_file.name)] if args.distill else []
    out = out_dir / "model.safetensors"
    result = structured_prune_job(dense_file, out, dataclasses.replace(settings, schedule=args.schedule), config,
                                  train_set=train_set, test_set=test_set, run_dir=out_dir,
                                  resume=(out_dir / "last.ckpt").exists(), hooks=hooks)
    return load_model(out)[0].eval(), result.record


def run(name: str, args, train_set, test_set) -> list[dict]:
    dense_file = args.out / f"{name}.safetensors"
    args.out.mkdir(parents=True, exist_ok=True)
    import_pretrained_job(name, args.data_dir / "pretrained" / CHECKPOINTS[name], dense_file)
    dense = load_model(dense_file)[0].eval()
    base = {"model": name, "top1": accuracy(dense, test_set), **(latency(dense, args.threads) if args.latency else {})}
    rows = []
    for key in args.settings:
        model = copy.deepcopy(dense)
        start = time.perf_counter()
        result = prune_channels(model, SHAPE, SETTINGS[key])
        row = {"setting": key, "prune_s": time.perf_counter() - start, "dense": base,
               "macs_before": result.macs_before, "macs_after": result.macs_after,
               "params_before": result.params_before, "params_after": result.params_after,
               "ratio": result.ratio, "top1_oneshot": accuracy(model.eval(), test_set)}
        if args.finetune_epochs:
            model, record = fine_tune(dense_file, SETTINGS[key], train_set, test_set, args, args.out / f"{name}-{key}")
            row.update(top1_finetuned=record["test_top1"], schedule=args.schedule, distill=args.distill,
                       epochs=args.finetune_epochs, ratio=record["ratio"],  # a gradual global plan may differ
                       **{k: record[k] for k in ("macs_after", "params_after")})
        row["mac_ratio"] = result.macs_before / result.macs_after
        if args.latency:
            row.update(latency(model, args.threads))
            for b in (1, 128):
                row[f"speedup_batch{b}"] = base[f"batch{b}_ms"] / row[f"batch{b}_ms"]
        rows.append(row)
        print(markdown(row), flush=True)
    return rows


def timing(row: dict, batch: int, digits: int) -> str:
    dense, pruned = row["dense"][f"batch{batch}_ms"], row[f"batch{batch}_ms"]
    return f"{dense:.{digits}f} -> {pruned:.{digits}f} ms ({row[f'speedup_batch{batch}']:.2f}x)"


def markdown(row: dict) -> str:
    tuned = f"{100 * row['top1_finetuned']:.2f}" if "top1_finetuned" in row else "-"
    b1, b128 = (timing(row, 1, 2), timing(row, 128, 0)) if "speedup_batch1" in row else ("not timed",) * 2
    return (f"| {row['dense']['model']} | {row['setting']} | {100 * row['dense']['top1']:.2f} | "
            f"{100 * row['top1_oneshot']:.2f} | {tuned} | {row['params_before'] / 1e3:.0f}k -> "
            f"{row['params_after'] / 1e3:.0f}k | {row['macs_before'] / 1e6:.1f}M -> {row['macs_after'] / 1e6:.1f}M "
            f"({row['mac_ratio']:.2f}x) | {b1} | {b128} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    p.add_argument("--out", type=Path, default=Path("runs/bench-structured"))
    p.add_argument("--models", nargs="+", default=list(CHECKPOINTS), choices=list(CHECKPOINTS))
    p.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--finetune-epochs", type=int, default=0)
    p.add_argument("--schedule", choices=SCHEDULES, default="oneshot",
                   help="with --finetune-epochs: prune before (oneshot) or gradually during the first half")
    p.add_argument("--distill", action="store_true", help="with --finetune-epochs: distil from the dense model")
    p.add_argument("--latency", action=argparse.BooleanOptionalAction, default=True,
                   help="time dense and pruned models at batch 1 and 128 (--no-latency when another job shares "
                        "the machine: those figures are not reportable; time the files later with structured_speed.py)")
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--limit-train", type=int, help="first N training images only (a quick check, not a result)")
    p.add_argument("--limit-test", type=int, help="first N test images only (a quick check, not a result)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    test_set = load_split("cifar10", "test", args.data_dir, args.limit_test)
    train_set = load_split("cifar10", "train", args.data_dir, args.limit_train) if args.finetune_epochs else None
    print("| model | setting | dense top-1 | one-shot top-1 | fine-tuned top-1 | params | MACs | "
          "latency batch 1 | latency batch 128 |\n|---|---|---|---|---|---|---|---|---|", flush=True)
    rows = []
    for name in args.models:
        rows += run(name, args, train_set, test_set)
    args.out.mkdir(parents=True, exist_ok=True)
    summary = {"machine": platform.processor() or platform.machine(), "torch": torch.__version__,
               "threads": args.threads, "finetune_epochs": args.finetune_epochs, "schedule": args.schedule,
               "distill": args.distill, "lr": args.lr, "weight_decay": args.weight_decay, "rows": rows}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
