"""Benchmark: does a structurally pruned model run faster, and on which engine?

For each model file (the first is the dense reference, the rest pruned versions of it) this
times one forward pass at the given batch sizes on three CPU engines:

- ``torch``: the model as stored (PyTorch eager, NCHW, BatchNorm separate);
- ``torch-optimized``: :func:`deepshrink.models.inference.inference_copy` (BatchNorm folded
  into the convolutions, channels-last weights);
- ``onnxruntime``: the float32 ONNX export run by ONNX Runtime (all graph optimisations).

Runs are interleaved (one pass of every model per round, rounds repeated), so a change of
machine load hits every model alike; the figure is the median over the rounds. The speed-up of
each pruned model is taken against the dense model on the same engine and compared with
0.8 x its MAC reduction (the structured-pruning issue's goal).

    python benchmarks/structured_speed.py r20.safetensors li.safetensors g8.safetensors \
        --batches 1 128 --threads 2 --rounds 30 --out runs/structured-speed.json

With 2 or more threads, PyTorch's and ONNX Runtime's thread pools in one process compete at
batch 1: time each engine in its own process (``--engines onnxruntime``, ...).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from deepshrink.analysis.costs import model_costs
from deepshrink.models import load_model
from deepshrink.models.inference import inference_copy
from deepshrink.quant.onnx_export import export_onnx, load_onnx

ENGINES = ("torch", "torch-optimized", "onnxruntime")


def labels_for(files: list[Path]) -> list[str]:
    """One label per file: its name, or its path where two files share a name (run-dir/model.safetensors)."""
    names = [f.name for f in files]
    return [f.name if names.count(f.name) == 1 else str(f) for f in files]


def engines_for(path: Path, threads: int, work: Path, engines=ENGINES) -> tuple[dict, int, tuple[int, ...]]:
    """({engine: callable model} for ``engines``, MACs per image, input shape) for one model file;
    ``work`` is a folder of its own for the ONNX export."""
    model, info = load_model(path)
    model.eval()
    runners = {}
    if "torch" in engines:
        runners["torch"] = model
    if "torch-optimized" in engines:
        runners["torch-optimized"] = inference_copy(model)
    if "onnxruntime" in engines:
        work.mkdir(parents=True, exist_ok=True)
        onnx_path = work / "model.onnx"
        export_onnx(model, info, onnx_path)
        runners["onnxruntime"] = load_onnx(onnx_path, threads)[0]
    return runners, model_costs(model, info.input.shape).totals["macs"], info.input.shape


@torch.inference_mode()
def interleaved_medians(runners: dict[str, dict], shape: tuple[int, ...], batch: int, rounds: int,
                        warmup: int) -> dict[tuple[str, str], float]:
    """Median ms per forward pass for every (file, engine), timed round-robin."""
    inputs = torch.randn(batch, *shape, generator=torch.Generator().manual_seed(0))
    times: dict[tuple[str, str], list[float]] = {}
    for round_index in range(warmup + rounds):
        for name, engines in runners.items():
            for engine, model in engines.items():
                start = time.perf_counter()
                model(inputs)
                elapsed = time.perf_counter() - start
                if round_index >= warmup:
                    times.setdefault((name, engine), []).append(elapsed * 1e3)
    return {key: statistics.median(values) for key, values in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="+", type=Path, help="dense model file first, then pruned ones")
    p.add_argument("--batches", nargs="+", type=int, default=[1, 128])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--engines", nargs="+", choices=ENGINES, default=list(ENGINES),
                   help="engines to time; with more than 1 thread time one engine per process (two thread "
                        "pools in one process disturb each other at batch 1)")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as work:
        labels = labels_for(args.files)
        if len(set(map(Path.resolve, args.files))) < len(args.files):
            raise SystemExit("structured_speed.py: a model file is named twice")
        loaded = {label: engines_for(f, args.threads, Path(work) / str(i), args.engines)
                  for i, (label, f) in enumerate(zip(labels, args.files))}
        runners = {name: entry[0] for name, entry in loaded.items()}
        macs = {name: entry[1] for name, entry in loaded.items()}
        shape = next(iter(loaded.values()))[2]
        dense = labels[0]
        rows = []
        for batch in args.batches:
            rounds = args.rounds if batch < 32 else max(5, args.rounds // 4)
            medians = interleaved_medians(runners, shape, batch, rounds, args.warmup)
            for (name, engine), ms in sorted(medians.items(), key=lambda kv: (ENGINES.index(kv[0][1]), kv[0][0])):
                mac_ratio = macs[dense] / macs[name]
                rows.append({"file": name, "engine": engine, "batch": batch, "rounds": rounds, "ms": ms,
                             "macs": macs[name], "mac_ratio": mac_ratio,
                             "speedup": medians[(dense, engine)] / ms, "goal": 0.8 * mac_ratio if name != dense else None})
    print(f"{args.threads} threads, median of interleaved rounds\n")
    print("| batch | engine | model | MACs | ms | speed-up vs dense | goal (0.8 x MAC ratio) |")
    print("|---:|---|---|---:|---:|---:|---:|")
    for r in rows:
        goal = "—" if r["goal"] is None else f"{r['goal']:.2f}x"
        print(f"| {r['batch']} | {r['engine']} | {r['file']} | {r['macs'] / 1e6:.1f} M ({r['mac_ratio']:.2f}x) | "
              f"{r['ms']:.2f} | {r['speedup']:.2f}x | {goal} |")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"threads": args.threads, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
