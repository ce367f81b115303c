"""Benchmark: fine-grained pruning of the pretrained ResNet-20 on the real CIFAR-10 test set.

    .venv/bin/python benchmarks/prune_resnet20.py --data-dir ../shared/data --out runs/bench-prune

Parts (``--parts``, default all): ``oneshot`` (per-layer magnitude q = 0.3/0.5/0.7, no
fine-tuning), ``std`` (s = 0.25/0.5/1.0, no fine-tuning), ``finetune`` (one-shot 0.7 + 20 epochs),
``linear`` (iterative to 0.7 over the first 10 of 20 epochs), ``global`` (the same, one
threshold over all layers; per-layer sparsities reported), ``sweep`` (linear schedule at higher
targets, to find the highest sparsity within 1 point of dense), ``sensitivity`` (each layer alone
pruned to 0.1 .. 0.9; table, PNG plot, per-layer targets within 1 point), ``timing`` (a masked
training step against a dense one).
Quick check: ``--limit 500 --limit-train 256 --epochs 2 --prune-epochs 1 --sweep 0.8``.
Writes OUT/summary.json and prints Markdown rows for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from deepshrink.data import BatchLoader
from deepshrink.models import load_model
from deepshrink.pipeline.datasets import load_split
from deepshrink.pipeline.evaluate import evaluate_model_file
from deepshrink.pipeline.import_pretrained import import_pretrained_job
from deepshrink.pipeline.prune import prune_job
from deepshrink.prune import PruneConfig
from deepshrink.prune import mask_method, prunable_layers
from deepshrink.prune.schedules import PruneSchedule
from deepshrink.prune.sensitivity import plot_sensitivity, sensitivity_scan, sensitivity_targets
from deepshrink.train import TrainConfig, evaluate

PARTS = ("oneshot", "std", "finetune", "linear", "global", "sweep", "sensitivity", "timing")


def training_step(dense_file: Path, masked: bool):
    """A function running one SGD step of ResNet-20 on a batch (with masks: 70 % per layer, and
    the after-step zeroing of the weights behind the masks)."""
    model, _ = load_model(dense_file)
    model.train().to(memory_format=torch.channels_last)
    hook, fake = None, argparse.Namespace(model=model, epoch=0)
    if masked:
        hook = PruneSchedule(list(prunable_layers(model)), mask_method("magnitude"), {0: 0.7})
        hook.on_fit_start(fake)
        hook.on_epoch_start(fake, 0)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if hook is not None:
            hook.after_step(fake)

    return step


def step_times(dense_file: Path, train_set, batch_size: int, repeats: int) -> dict[str, float]:
    """Median ms per training step, dense and masked, measured alternately on the same batches."""
    steps = {"dense": training_step(dense_file, False), "masked": training_step(dense_file, True)}
    _, info = load_model(dense_file)
    loader = BatchLoader(train_set, batch_size, shuffle=True, mean=info.input.mean, std=info.input.std)
    batches, times = iter(loader), {name: [] for name in steps}
    for i in range(repeats + 3):
        x, y = next(batches)
        x = x.contiguous(memory_format=torch.channels_last)
        for name, step in steps.items():
            start = time.perf_counter()
            step(x, y)
            if i >= 3:
                times[name].append(time.perf_counter() - start)
    return {name: 1e3 * statistics.median(values) for name, values in times.items()}


def sensitivity(dense_file: Path, test_set, out: Path) -> dict:
    """Per-layer sensitivity on ``test_set``: table, plot (OUT/sensitivity.png), 1-point targets."""
    model, info = load_model(dense_file)
    loader = BatchLoader(test_set, 500, mean=info.input.mean, std=info.input.std)
    grid = [round(0.1 * i, 1) for i in range(1, 10)]
    result = sensitivity_scan(model, list(prunable_layers(model)), grid, lambda m: evaluate(m, loader).top1)
    plot_sensitivity(result, out / "sensitivity.png")
    return {"baseline": result.baseline, "rows": result.rows(), "targets": sensitivity_targets(result, 0.01)}


def run_prune(dense: Path, out: Path, settings: PruneConfig, epochs: int, args, train_set, test_set) -> dict:
    config = TrainConfig(epochs=epochs, lr=args.lr, batch_size=128, weight_decay=5e-4, progress=False)
    result = prune_job(dense, out, settings, config, train_set=train_set if epochs else None,
                       test_set=test_set, run_dir=out.with_suffix(".run") if epochs else None)
    return {"file": str(out), "sparsity": result.sparsity, "top1": result.test_top1,
            "layers": result.layer_sparsity, "epochs": epochs}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default="../shared/data")
    p.add_argument("--out", default="runs/bench-prune")
    p.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--prune-epochs", type=int, default=10)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--sweep", type=float, nargs="+", default=[0.8, 0.85, 0.9])
    p.add_argument("--limit", type=int, help="only the first N test images (quick check)")
    p.add_argument("--limit-train", type=int, help="only the first N training images (quick check)")
    p.add_argument("--threads", type=int)
    p.add_argument("--repeats", type=int, default=20, help="timed steps (timing part)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dense = out / "resnet20-dense.safetensors"
    import_pretrained_job("resnet20", Path(args.data_dir) / "pretrained" / "resnet20-12fca82f.th", dense)
    test_set = load_split("cifar10", "test", args.data_dir, args.limit)
    training = set(args.parts) & {"finetune", "linear", "global", "sweep"}
    train_set = load_split("cifar10", "train", args.data_dir, args.limit_train) if training else None
    summary = {"dense_top1": evaluate_model_file(dense, test_set)["top1"], "examples": len(test_set),
               "threads": torch.get_num_threads(), "runs": {}}
    runs = summary["runs"]
    print(f"dense: {100 * summary['dense_top1']:.2f}% on {len(test_set)} test images")

    def record(name: str, result: dict) -> None:
        runs[name] = result
        drop = 100 * (summary["dense_top1"] - result["top1"])
        print(f"| {name} | {100 * result['sparsity']:.1f}% | {100 * result['top1']:.2f}% | {drop:+.2f} |",
              flush=True)
        (out / "summary.json").write_text(json.dumps(summary, indent=2))

    if "oneshot" in args.parts:
        for q in (0.3, 0.5, 0.7):
            record(f"oneshot q={q}", run_prune(dense, out / f"oneshot-{q}.safetensors", PruneConfig(q), 0,
                                               args, train_set, test_set))
    if "std" in args.parts:
        for s in (0.25, 0.5, 1.0):
            record(f"std s={s}", run_prune(dense, out / f"std-{s}.safetensors", PruneConfig(criterion="std", std_factor=s), 0,
                                           args, train_set, test_set))
    if "finetune" in args.parts:
        record("oneshot q=0.7 + fine-tune", run_prune(dense, out / "oneshot-ft.safetensors", PruneConfig(0.7),
                                                      args.epochs, args, train_set, test_set))
    ramps = {"linear": ("layer", [0.7]), "global": ("global", [0.7]), "sweep": ("layer", args.sweep)}
    for part, (scope, targets) in ramps.items():
        if part in args.parts:
            for q in targets:
                settings = PruneConfig(q, scope=scope, schedule="linear", prune_epochs=args.prune_epochs)
                record(f"linear to {q} ({scope})", run_prune(dense, out / f"{part}-{q}.safetensors", settings,
                                                          args.epochs, args, train_set, test_set))
    if "sensitivity" in args.parts:
        summary["sensitivity"] = sensitivity(dense, test_set, out)
        for row in summary["sensitivity"]["rows"]:
            print("| " + " | ".join(f"{100 * v:.1f}" if isinstance(v, float) else v for v in row.values()) + " |")
        print("targets within 1 point:", summary["sensitivity"]["targets"])
    if "timing" in args.parts:
        timing_set = train_set or load_split("cifar10", "train", args.data_dir, 128 * (args.repeats + 3))
        ms = step_times(dense, timing_set, 128, args.repeats)
        dense_ms, masked_ms = ms["dense"], ms["masked"]
        summary["step_ms"] = {**ms, "overhead": masked_ms / dense_ms - 1}
        print(f"training step (batch 128): dense {dense_ms:.1f} ms, masked {masked_ms:.1f} ms "
              f"({100 * (masked_ms / dense_ms - 1):+.1f}%)")
    (out / "summary.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
