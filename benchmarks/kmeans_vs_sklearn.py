"""Benchmark: deepshrink's 1-D k-means against scikit-learn's KMeans on the same weights.

For every conv layer of the pretrained ResNet-20 and a large synthetic layer (Laplace weights),
with K = 16 and 256 clusters: the median time of a few runs and the within-cluster sum of
squares (WCSS, float64) of

- ours: ``kmeans_1d`` with linear initialisation (Lloyd to an exact fixed point + split-merge);
- sklearn, same init: ``KMeans(K, init=<the same linear centroids>, n_init=1)``;
- sklearn, default: ``KMeans(K)`` (greedy k-means++, one run).

    .venv/bin/python benchmarks/kmeans_vs_sklearn.py --checkpoint ../shared/data/pretrained/resnet20-12fca82f.th

Prints a Markdown table for BENCHMARKS.md (``--json FILE`` also writes the rows).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.cluster import KMeans
from threadpoolctl import threadpool_limits
from torch import nn

from deepshrink.models.pretrained import import_pretrained
from deepshrink.quant.kmeans import initial_centroids, kmeans_1d, wcss


def timed(fn, repeats: int):
    """(result of the last call, median seconds over ``repeats`` calls)."""
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        seconds.append(time.perf_counter() - start)
    return result, statistics.median(seconds)


def compare(values: np.ndarray, k: int, repeats: int) -> dict:
    """Time and WCSS of ours and of the two sklearn settings on ``values`` (n,) float64."""
    column = values.reshape(-1, 1)
    init = initial_centroids(np.sort(values), k, "linear")
    ours, ours_s = timed(lambda: kmeans_1d(values, k, "linear"), repeats)
    same, same_s = timed(lambda: KMeans(k, init=init.reshape(-1, 1), n_init=1).fit(column), repeats)
    default, default_s = timed(lambda: KMeans(k, random_state=0).fit(column), repeats)
    return {
        "n": len(values), "k": k,
        "ours_ms": 1e3 * ours_s, "ours_wcss": ours.wcss,
        "sk_same_ms": 1e3 * same_s, "sk_same_wcss": wcss(values, same.cluster_centers_, same.labels_),
        "sk_default_ms": 1e3 * default_s, "sk_default_wcss": wcss(values, default.cluster_centers_, default.labels_),
    }


def layers(checkpoint: str, synthetic_size: int) -> dict[str, np.ndarray]:
    """Layer name -> its weights (float64, flattened): ResNet-20's convs and a synthetic layer."""
    model, _ = import_pretrained("resnet20", checkpoint)
    found = {name: m.weight.detach().double().reshape(-1).numpy()
             for name, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    torch.manual_seed(0)
    laplace = torch.distributions.Laplace(0.0, 0.02)
    found[f"synthetic ({synthetic_size:,} Laplace)"] = laplace.sample((synthetic_size,)).double().numpy()
    return found


def table(rows: list[dict]) -> str:
    lines = ["| layer | n | K | ours ms | ours WCSS | sklearn same-init ms | WCSS | sklearn default ms | WCSS |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['layer']} | {r['n']:,} | {r['k']} | {r['ours_ms']:.1f} | {r['ours_wcss']:.5g} | "
                     f"{r['sk_same_ms']:.1f} | {r['sk_same_wcss']:.5g} | {r['sk_default_ms']:.1f} | "
                     f"{r['sk_default_wcss']:.5g} |")
    return "\n".join(lines)


def summary(rows: list[dict]) -> str:
    lines = []
    for k in sorted({r["k"] for r in rows}):
        sel = [r for r in rows if r["k"] == k]
        for other in ("sk_same", "sk_default"):
            faster = sum(r["ours_ms"] < r[f"{other}_ms"] for r in sel)
            better = sum(r["ours_wcss"] <= r[f"{other}_wcss"] * (1 + 1e-9) for r in sel)
            speed = statistics.median(r[f"{other}_ms"] / r["ours_ms"] for r in sel)
            gain = statistics.median(r[f"{other}_wcss"] / r["ours_wcss"] for r in sel)
            lines.append(f"K={k} vs {other}: faster on {faster}/{len(sel)} layers (median speed-up {speed:.1f}x), "
                         f"WCSS lower or equal on {better}/{len(sel)} (median sklearn/ours {gain:.3f})")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="../shared/data/pretrained/resnet20-12fca82f.th")
    parser.add_argument("--clusters", type=int, nargs="+", default=[16, 256])
    parser.add_argument("--repeats", type=int, default=3, help="runs per timing (median)")
    parser.add_argument("--synthetic-size", type=int, default=1 << 20)
    parser.add_argument("--threads", type=int, default=2, help="threads scikit-learn may use")
    parser.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    args = parser.parse_args()
    rows = []
    with threadpool_limits(args.threads):
        for name, values in layers(args.checkpoint, args.synthetic_size).items():
            for k in args.clusters:
                rows.append({"layer": name, **compare(values, k, args.repeats)})
    print(table(rows))
    print()
    print(summary(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
