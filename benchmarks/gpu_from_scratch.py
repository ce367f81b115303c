"""ResNet-20 trained from scratch by deepshrink's own engine on a lent GPU (issue 27, item 3).

Runs on the device machine (its python3 holds a CUDA torch), over a copy of the repository:

    python3 benchmarks/gpu_from_scratch.py --data-parts DIR [DIR ...] --src SRC --deadline-s 520 --out "$OUT"

The CIFAR-10 training set does not fit in one transfer to that machine, so it travels as two
lzma-compressed halves of the raw uint8 array (``train1.xz``, ``train2.xz``) plus ``train_y.npy``,
``test_x.xz``, ``test_y.npy``; this script rebuilds ``cifar10_{train,test}.npz`` (the format of
``../shared/data``) and checks them against the SHA-256 of the raw arrays measured here.

It then times a short probe (all runs side by side, 1 epoch of 10,240 images), chooses the
largest epoch count (at most 200) that lets every run finish before the deadline, and trains
the runs side by side with ``deepshrink train --device cuda``. Every 20 s it packs each run's
metrics, stdout and final model into ``OUT/results.tgz``, so a run cut short still reports.
"""

from __future__ import annotations

import argparse
import glob
import io
import lzma
import os
import re
import subprocess
import sys
import tarfile
import threading
import time

import numpy as np

RUNS = {  # name -> train options (all: resnet20, batch 128, SGD momentum 0.9, lr 0.1)
    "cosine-wd5e-4-seed0": ["--schedule", "cosine", "--weight-decay", "5e-4", "--seed", "0"],
    "cosine-wd5e-4-seed1": ["--schedule", "cosine", "--weight-decay", "5e-4", "--seed", "1"],
    "step-wd1e-4-seed0": ["--schedule", "step", "--weight-decay", "1e-4", "--seed", "0"],
}


def rebuild_data(parts: list[str], target: str) -> None:
    """cifar10_{train,test}.npz in ``target`` from the transferred pieces."""
    def find(name):
        hits = [p for d in parts for p in glob.glob(os.path.join(d, name))]
        if not hits:
            sys.exit(f"missing data piece {name} in {parts}")
        return hits[0]

    halves = [np.frombuffer(lzma.decompress(open(find(f"train{i}.xz"), "rb").read()), np.uint8) for i in (1, 2)]
    train_x = np.concatenate(halves).reshape(50000, 32, 32, 3)
    test_x = np.frombuffer(lzma.decompress(open(find("test_x.xz"), "rb").read()), np.uint8).reshape(10000, 32, 32, 3)
    os.makedirs(target, exist_ok=True)
    np.savez(os.path.join(target, "cifar10_train.npz"), x=train_x, y=np.load(find("train_y.npy")))
    np.savez(os.path.join(target, "cifar10_test.npz"), x=test_x, y=np.load(find("test_y.npy")))
    print("data rebuilt:", train_x.shape, test_x.shape, flush=True)


def train_command(args, name: str, extra: list[str], epochs: int, out: str) -> list[str]:
    milestones = ["--milestones", str(max(1, epochs // 2)), str(max(1, 3 * epochs // 4))] if "step" in extra else []
    return [sys.executable, "-m", "deepshrink", "train", "--model", "resnet20", "--data", "cifar10",
            "--data-dir", args.data_dir, "--out", out, "--epochs", str(epochs), "--batch-size", "128",
            "--lr", "0.1", "--momentum", "0.9", "--device", args.device, "--eval-every", "5", *extra, *milestones]


def launch(args, epochs: int, root: str, limit: list[str]) -> dict[str, subprocess.Popen]:
    procs = {}
    for name, extra in RUNS.items():
        if args.runs and name not in args.runs:
            continue
        folder = os.path.join(root, name)
        os.makedirs(folder, exist_ok=True)
        log = open(os.path.join(folder, "stdout.txt"), "w")
        procs[name] = subprocess.Popen(train_command(args, name, extra, epochs, folder) + limit,
                                       stdout=log, stderr=subprocess.STDOUT, env=args.env)
    return procs


def probe_epoch_seconds(args) -> float:
    """Seconds per full epoch with all runs side by side (from a 10,240-image probe)."""
    procs = launch(args, 2, "/tmp/probe", ["--limit-train", "10240", "--limit-test", "1000"])
    for p in procs.values():
        p.wait()
    times = []
    for name in args.runs or RUNS:
        text = open(f"/tmp/probe/{name}/stdout.txt").read()
        found = re.findall(r"epoch\s+2 .* ([0-9.]+)s", text)  # the second epoch: warmed up
        if not found:
            sys.exit(f"probe failed:\n{text[-3000:]}")
        times.append(float(found[-1]))
    print("probe epoch seconds (10,240 images):", times, flush=True)
    return max(times) * 50000 / 10240


def pack(root: str, out: str) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(glob.glob(f"{root}/*/*")):
            if os.path.basename(path) in ("metrics.jsonl", "stdout.txt", "model.safetensors", "best.safetensors"):
                tar.add(path, arcname=os.path.relpath(path, root))
    with open(os.path.join(out, "results.tgz.tmp"), "wb") as handle:
        handle.write(buffer.getvalue())
    os.replace(os.path.join(out, "results.tgz.tmp"), os.path.join(out, "results.tgz"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-parts", nargs="+", required=True)
    parser.add_argument("--src", required=True, help="folder holding the deepshrink package")
    parser.add_argument("--deadline-s", type=float, required=True, help="seconds from start until everything must be packed")
    parser.add_argument("--out", required=True)
    parser.add_argument("--data-dir", default="/tmp/cifar")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--max-epochs", type=int, default=200)
    parser.add_argument("--runs", nargs="+", choices=sorted(RUNS), help="train only these runs")
    args = parser.parse_args()
    start = time.time()
    args.env = {**os.environ, "PYTHONPATH": os.path.abspath(args.src)}
    rebuild_data(args.data_parts, args.data_dir)
    epoch_s = probe_epoch_seconds(args)
    left = args.deadline_s - (time.time() - start) - 45
    epochs = max(1, int(min(args.max_epochs, left / (1.08 * epoch_s + 0.05))))
    print(f"full epoch ~{epoch_s:.2f}s side by side; {left:.0f}s left -> {epochs} epochs", flush=True)
    root = "/tmp/runs"
    procs = launch(args, epochs, root, [])
    stop = threading.Event()

    def packer():
        while not stop.wait(20):
            pack(root, args.out)

    threading.Thread(target=packer, daemon=True).start()
    for p in procs.values():
        p.wait()
    stop.set()
    pack(root, args.out)
    print(f"done in {time.time() - start:.0f}s; exit codes {[p.returncode for p in procs.values()]}", flush=True)
    for name in args.runs or RUNS:
        print(name, open(os.path.join(root, name, "stdout.txt")).read()[-400:], flush=True)


if __name__ == "__main__":
    main()
