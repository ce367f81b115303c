"""Fast 1-D k-means: Lloyd's algorithm on sorted values, run to an exact fixed point, then
split-merge refinement.

The values are sorted once (O(n log n)). In 1-D every cluster of a Lloyd step is an interval
of the sorted values, bounded by the midpoints between neighbouring centroids, so one
iteration is a ``searchsorted`` of the K-1 midpoints (O(K log n)) and the new centroids are
interval means from prefix sums (O(K)). Iterations run until the assignment stops changing
(an exact fixed point, no tolerance). Lloyd's fixed points are only local minima, so split-merge
moves then relocate centroids (see :func:`kmeans_1d`). Against the exact optimum (an O(K n^2)
dynamic programme) the result was within 0.05 % on two ResNet-20 layers at K = 16; the tests
check 1 % on small mixtures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
from torch import Tensor

INITS = ("random", "density", "linear")


@dataclass(frozen=True)
class Clustering:
    """Result of :func:`kmeans_1d` for n values and k clusters."""

    centroids: Tensor  # (k,) float32, ascending
    labels: Tensor     # (n,) int64 in [0, k): the cluster of each value, in the input's order
    wcss: float        # within-cluster sum of squares, sum (x - centroid)^2, in float64
    iterations: int    # Lloyd iterations run
    converged: bool    # the assignment reached a fixed point within max_iter


def initial_centroids(sorted_values: np.ndarray, k: int, init: str, seed: int = 0) -> np.ndarray:
    """k ascending starting centroids (float64) from ascending ``sorted_values`` (n >= 1):
    ``linear`` evenly spaced between min and max; ``density`` the quantiles at (i + 1/2) / k;
    ``random`` k values drawn without replacement (with, when k > n) by a seeded generator."""
    n = len(sorted_values)
    if init == "linear":
        return np.linspace(sorted_values[0], sorted_values[-1], k)
    if init == "density":
        return sorted_values[np.minimum(((np.arange(k) + 0.5) * n / k).astype(np.int64), n - 1)]
    if init == "random":
        picks = np.random.default_rng(seed).choice(n, size=k, replace=k > n)
        return np.sort(sorted_values[picks])
    raise ValueError(f"unknown k-means init {init!r}; choose one of: {', '.join(INITS)}")


def kmeans_1d(values: Tensor | np.ndarray, k: int, init: str | Tensor | np.ndarray = "linear", *,
              seed: int = 0, refine: bool = True, max_iter: int = 10_000) -> Clustering:
    """Cluster the 1-D ``values`` (n,) into ``k`` clusters; ``init`` is one of :data:`INITS`
    or an array of k starting centroids. Empty clusters keep their centroid.

    With ``refine``, Lloyd's fixed point is improved by split-merge moves (one centroid taken
    from where it helps least, another cluster split where that helps most, then Lloyd again),
    kept while the sum of squares decreases: this leaves the local minima Lloyd stops in.
    """
    x = torch.as_tensor(values).detach().reshape(-1).cpu().double().numpy()
    n = len(x)
    if n == 0:
        return Clustering(torch.zeros(k), torch.zeros(0, dtype=torch.long), 0.0, 0, True)
    data = _Sorted(np.sort(x))
    if isinstance(init, str):
        centroids = initial_centroids(data.x, k, init, seed)
    else:
        centroids = np.sort(torch.as_tensor(init).reshape(-1).cpu().double().numpy())
        if len(centroids) != k:
            raise ValueError(f"expected {k} initial centroids, got {len(centroids)}")
    centroids, bounds, iterations, converged = _lloyd(data, centroids, max_iter)
    while refine and converged:
        best = data.wcss(bounds)
        for moved in _split_merge_candidates(data, centroids, bounds):
            trial = _lloyd(data, moved, max_iter)
            iterations += trial[2]
            if trial[3] and data.wcss(trial[1]) < best:
                centroids, bounds = trial[0], trial[1]
                break
        else:
            break
    labels = _labels(data.x, bounds, x)
    within = data.wcss(bounds)
    return Clustering(torch.from_numpy(centroids).float(), torch.from_numpy(labels), within,
                      iterations, converged)


class _Sorted:
    """Ascending values with prefix sums of x and x^2 (shifted by the mean for accuracy):
    the count, sum and sum of squared deviations of any interval [a, b) in O(1)."""

    def __init__(self, sorted_x: np.ndarray):
        self.x = sorted_x
        self.n = len(sorted_x)
        self.shift = float(sorted_x.mean())
        centred = sorted_x - self.shift
        self.p1 = np.concatenate(([0.0], np.cumsum(centred)))
        self.p2 = np.concatenate(([0.0], np.cumsum(centred * centred)))

    def sums(self, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Element count and sum of the intervals [a, b)."""
        count = b - a
        return count, self.p1[b] - self.p1[a] + self.shift * count

    def sse(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Sum of squared deviations from the mean of each interval [a, b) (0 when empty)."""
        count = b - a
        s1 = self.p1[b] - self.p1[a]
        return np.maximum(self.p2[b] - self.p2[a] - s1 * s1 / np.maximum(count, 1), 0.0)

    def wcss(self, bounds: np.ndarray) -> float:
        return float(self.sse(bounds[:-1], bounds[1:]).sum())

    def cost_to(self, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
        """Sum of (x - c)^2 over each interval [a, b)."""
        count = b - a
        s1 = self.p1[b] - self.p1[a]
        d = c - self.shift
        return self.p2[b] - self.p2[a] - 2 * d * s1 + d * d * count


def _labels(sorted_x: np.ndarray, bounds: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The cluster of each value of ``x`` (any order) given the clusters [bounds[j], bounds[j+1])
    of ``sorted_x``: equal values never straddle a bound, so a value's cluster is the number of
    clusters before an inner bound whose last value lies below it."""
    cuts = bounds[1:-1]
    last = np.where(cuts > 0, sorted_x[np.maximum(cuts - 1, 0)], -np.inf)
    return np.searchsorted(last, x, side="left").astype(np.int64)


def _lloyd(data: _Sorted, centroids: np.ndarray, max_iter: int):
    """Lloyd iterations to an exact fixed point: (centroids, bounds (k+1,), iterations, converged);
    cluster j holds the sorted values [bounds[j], bounds[j+1])."""
    cuts, iterations = None, 0
    while iterations < max_iter:
        iterations += 1
        new_cuts = np.searchsorted(data.x, (centroids[:-1] + centroids[1:]) / 2, side="right")
        bounds = np.concatenate(([0], new_cuts, [data.n]))
        count, total = data.sums(bounds[:-1], bounds[1:])
        centroids = np.where(count > 0, total / np.maximum(count, 1), centroids)
        if cuts is not None and np.array_equal(new_cuts, cuts):
            return centroids, bounds, iterations, True
        cuts = new_cuts
    return centroids, bounds, iterations, False


def _split_merge_candidates(data: _Sorted, centroids: np.ndarray, bounds: np.ndarray,
                            tries: int = 8) -> Iterator[np.ndarray]:
    """Centroid sets to try from Lloyd's fixed point: first all profitable non-overlapping
    (remove one centroid, split one cluster) moves at once, then the ``tries`` single moves
    with the best estimated change, profitable or not. An estimate (split gain minus removal
    cost, the removed cluster's values going to its fixed neighbours) bounds the change after
    the move; the Lloyd iterations that follow can only lower the sum of squares further."""
    gain, left_mean, right_mean = _split_gains(data, bounds)
    cost = _removal_costs(data, centroids, bounds)
    removals = np.argsort(cost, kind="stable")[:tries]
    splits = np.argsort(-gain, kind="stable")[:tries]
    moves = sorted(((gain[s] - cost[r], int(r), int(s)) for r in removals for s in splits
                    if abs(int(r) - int(s)) > 1), reverse=True)

    def apply(pairs):
        removed, split = [r for r, _ in pairs], [s for _, s in pairs]
        kept = np.delete(centroids, removed + split)
        return np.sort(np.concatenate((kept, left_mean[split], right_mean[split])))

    batch, used = [], set()
    for r, s in zip(np.argsort(cost, kind="stable"), np.argsort(-gain, kind="stable")):
        if gain[s] <= cost[r]:
            break
        if abs(int(r) - int(s)) > 1 and not used & {r - 1, r, r + 1, s}:
            used |= {r - 1, r, r + 1, s}
            batch.append((r, s))
    if len(batch) > 1:
        yield apply(batch)
    for _, r, s in moves[:tries]:
        yield apply([(r, s)])


def _split_gains(data: _Sorted, bounds: np.ndarray, positions: int = 64):
    """Per cluster: the decrease of its sum of squares from its best split in two, and the
    means of the two halves. Clusters of up to ``positions`` + 1 values try every split;
    larger ones ``positions`` evenly spaced ones."""
    a, b = bounds[:-1], bounds[1:]
    steps = np.arange(1, positions + 1) / (positions + 1)
    at = a[:, None] + np.floor((b - a)[:, None] * steps).astype(np.int64)  # (k, positions)
    cost = np.where(at > a[:, None], data.sse(a[:, None], at) + data.sse(at, b[:, None]), np.inf)
    best = cost.argmin(axis=1)
    rows = np.arange(len(a))
    at, lowest = at[rows, best], cost[rows, best]
    gain = np.where(np.isfinite(lowest), data.sse(a, b) - lowest, 0.0)
    left_n, left_sum = data.sums(a, at)
    right_n, right_sum = data.sums(at, b)
    return gain, left_sum / np.maximum(left_n, 1), right_sum / np.maximum(right_n, 1)


def _removal_costs(data: _Sorted, centroids: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Per cluster: the increase of the sum of squares when its centroid is removed and its
    values go to the nearer neighbouring centroid (neighbours kept fixed)."""
    if len(centroids) == 1:
        return np.full(1, np.inf)
    a, b = bounds[:-1], bounds[1:]
    below = np.concatenate(([-np.inf], centroids[:-1]))
    above = np.concatenate((centroids[1:], [np.inf]))
    middle = np.where(np.isfinite(below) & np.isfinite(above), (below + above) / 2,
                      np.where(np.isfinite(below), np.inf, -np.inf))
    cut = np.clip(np.searchsorted(data.x, middle, side="right"), a, b)
    to_below = np.where(cut > a, data.cost_to(a, cut, np.where(np.isfinite(below), below, 0.0)), 0.0)
    to_above = np.where(b > cut, data.cost_to(cut, b, np.where(np.isfinite(above), above, 0.0)), 0.0)
    return to_below + to_above - data.sse(a, b)


def wcss(values: Tensor | np.ndarray, centroids: Tensor | np.ndarray, labels: Tensor | np.ndarray) -> float:
    """Within-cluster sum of squares of a clustering, computed in float64."""
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    c = np.asarray(centroids, dtype=np.float64).reshape(-1)
    return float(np.sum((x - c[np.asarray(labels).reshape(-1)]) ** 2))
