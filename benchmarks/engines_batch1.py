"""Benchmark: batch-1 and batch-128 latency of a dense model, its int8 export and its structurally
pruned versions on every CPU engine (issue 26, items 1 and 3).

The first file is the dense reference (a model file); the others are model files (pruned) or
deepshrink ``.onnx`` exports (int8 QDQ). Engines: ``torch`` (eager, as stored),
``torch-optimized`` (BatchNorm folded, channels-last), ``onnxruntime`` and ``openvino`` (float32
inference; int8 where the graph is int8). ``.onnx`` files run only in the last two.

Each engine runs in a process of its own (``--worker``), so no two engines' thread pools meet;
inside it every file the engine can run is timed round-robin (one pass of each per round, so
load changes hit all alike) and the median over rounds is kept. The parent starts the engine
processes one after another, ``--runs`` times (engine order reversed every other run), and
reports the median over runs. Ratios are against the dense file on the same engine; the
fastest engine of each row is named.

    python benchmarks/engines_batch1.py r20.safetensors r20-int8.onnx r20-pruned.safetensors \\
        r20-pruned-int8.onnx --threads 1 --runs 3 --out runs/engines.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from deepshrink.errors import UserError
from deepshrink.pipeline.bench import ENGINES, check_engine, engine_version, open_on_engine


def runnable(files: list[Path], engine: str) -> list[Path]:
    """The files ``engine`` can run."""
    found = []
    for path in files:
        try:
            check_engine(path, engine)
        except UserError:
            continue
        found.append(path)
    return found


@torch.inference_mode()
def worker(engine: str, files: list[Path], batches: list[int], threads: int, rounds: int,
           warmup: int) -> dict:
    """{file name: {batch: median ms}} for every file ``engine`` runs, round-robin."""
    torch.set_num_threads(threads)
    result: dict = {}
    for batch in batches:
        with tempfile.TemporaryDirectory() as work:
            models = {}
            for i, path in enumerate(runnable(files, engine)):
                Path(work, str(i)).mkdir()
                models[path.name], info = open_on_engine(engine, path, threads, batch, Path(work, str(i)))
        inputs = torch.randn(batch, *info.input.shape, generator=torch.Generator().manual_seed(0))
        times: dict[str, list[float]] = {name: [] for name in models}
        n = rounds if batch < 32 else max(5, rounds // 20)
        for index in range(warmup + n):
            for name, model in models.items():
                start = time.perf_counter()
                model(inputs)
                if index >= warmup:
                    times[name].append((time.perf_counter() - start) * 1e3)
        for name, values in times.items():
            result.setdefault(name, {})[str(batch)] = statistics.median(values)
    return result


def machine() -> dict:
    """CPU, cores and engine versions, for the record."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    flags = Path("/proc/cpuinfo").read_text()
    isa = [f for f in ("avx2", "avx512f", "avx512_vnni", "amx_int8") if f" {f}" in flags]
    versions = {}
    for engine in ("torch", "onnxruntime", "openvino"):
        try:
            versions[engine] = engine_version(engine)
        except (ImportError, UserError):
            versions[engine] = None
    return {"cpu": cpu, "isa": isa, "cores": os.cpu_count(), "python": platform.python_version(),
            "versions": versions, "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def run_all(args) -> dict[str, dict[str, dict[str, list[float]]]]:
    """{engine: {file: {batch: [median ms of each run]}}}, each engine in its own process."""
    engines = list(args.engines)
    found: dict = {}
    for run in range(args.runs):
        for engine in (engines if run % 2 == 0 else engines[::-1]):
            command = [sys.executable, __file__, *map(str, args.files), "--worker", engine,
                       "--threads", str(args.threads), "--rounds", str(args.rounds), "--warmup", str(args.warmup),
                       "--batches", *map(str, args.batches)]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode:
                raise SystemExit(f"engines_batch1.py: the {engine} process failed:\n{done.stderr}")
            out = done.stdout
            for name, by_batch in json.loads(out).items():
                for batch, ms in by_batch.items():
                    found.setdefault(engine, {}).setdefault(name, {}).setdefault(batch, []).append(ms)
            print(f"run {run + 1}/{args.runs}: {engine} done", file=sys.stderr)
    return found


def rows(found: dict, files: list[Path], batches: list[int]) -> list[dict]:
    """One row per (batch, file, engine): median over runs, spread, ratio against dense."""
    dense = files[0].name
    table = []
    for batch in map(str, batches):
        for path in files:
            for engine, by_file in found.items():
                if path.name not in by_file:
                    continue
                runs = by_file[path.name][batch]
                ms = statistics.median(runs)
                table.append({"batch": int(batch), "file": path.name, "engine": engine, "ms": ms,
                              "runs_ms": runs, "vs_dense": statistics.median(by_file[dense][batch]) / ms})
    return table


def print_tables(table: list[dict], engines: list[str], info: dict, args) -> None:
    print(f"{info['cpu']} ({', '.join(info['isa'])}), {info['cores']} cores; {info['versions']}; {info['date']}")
    print(f"{args.threads} thread(s), median over {args.runs} runs (one process per engine each) "
          f"of the median of round-robin passes\n")
    print("| batch | file | " + " | ".join(engines) + " | fastest |")
    print("|---:|---|" + "---:|" * len(engines) + "---|")
    for batch in args.batches:
        for path in args.files:
            cells = {r["engine"]: r for r in table if r["batch"] == batch and r["file"] == path.name}
            shown = [f"{cells[e]['ms']:.3f} ms ({cells[e]['vs_dense']:.2f}x)" if e in cells else "—" for e in engines]
            fastest = min(cells.values(), key=lambda r: r["ms"])["engine"]
            print(f"| {batch} | {path.name} | " + " | ".join(shown) + f" | {fastest} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="+", type=Path, help="the dense model file first, then int8/pruned files")
    p.add_argument("--engines", nargs="+", choices=ENGINES, default=list(ENGINES))
    p.add_argument("--batches", nargs="+", type=int, default=[1, 128])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--runs", type=int, default=3, help="processes per engine; the median over them is reported")
    p.add_argument("--rounds", type=int, default=200, help="round-robin passes at batch 1 (1/20 of it at batch >= 32, at least 5)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--worker", choices=ENGINES, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help="write the rows and the machine as JSON")
    args = p.parse_args()
    if len({f.name for f in args.files}) < len(args.files):
        raise SystemExit("engines_batch1.py: give files with distinct names")
    if args.worker:
        print(json.dumps(worker(args.worker, args.files, args.batches, args.threads, args.rounds, args.warmup)))
        return
    info = machine()
    table = rows(run_all(args), args.files, args.batches)
    print_tables(table, list(args.engines), info, args)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"machine": info, "command": sys.argv, "threads": args.threads,
                                        "runs": args.runs, "rows": table}, indent=1))


if __name__ == "__main__":
    main()
