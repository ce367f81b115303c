"""1-D k-means: initialisations, the Lloyd fixed point, and optimality on small problems."""

import numpy as np
import pytest
import torch

from deepshrink.quant.kmeans import initial_centroids, kmeans_1d, wcss


def test_linear_init_on_two_separated_groups():
    values = torch.tensor([10.0, 0.0, 12.0, 1.0, 11.0, 2.0])
    result = kmeans_1d(values, 2, "linear", refine=False)
    # starts at (0, 12); the midpoint 6 separates {0, 1, 2} from {10, 11, 12}
    assert result.centroids.tolist() == [1.0, 11.0]
    assert result.labels.tolist() == [1, 0, 1, 0, 1, 0]
    assert result.wcss == pytest.approx(4.0)
    assert result.converged


def test_linear_init_finds_the_modes_of_a_known_mixture():
    generator = torch.Generator().manual_seed(0)
    modes = torch.tensor([-3.0, -1.0, 1.0, 3.0])
    drawn = torch.randint(0, 4, (4000,), generator=generator)
    values = modes[drawn] + 0.05 * torch.randn(4000, generator=generator)
    result = kmeans_1d(values, 4, "linear")
    assert torch.allclose(result.centroids, modes, atol=0.01)
    assert torch.equal(result.labels, drawn)  # every value in the cluster of the mode it came from
    for k in range(4):
        assert result.centroids[k].item() == pytest.approx(values[drawn == k].double().mean().item(), abs=1e-6)


def test_initial_centroids():
    x = np.arange(100.0)
    assert initial_centroids(x, 5, "linear").tolist() == [0.0, 24.75, 49.5, 74.25, 99.0]
    assert initial_centroids(x, 4, "density").tolist() == [12.0, 37.0, 62.0, 87.0]  # (i + 1/2) / 4 quantiles
    first = initial_centroids(x, 8, "random", seed=3)
    assert first.tolist() == initial_centroids(x, 8, "random", seed=3).tolist()
    assert len(set(first.tolist())) == 8 and set(first.tolist()) <= set(x.tolist())
    assert list(first) == sorted(first)


@pytest.mark.parametrize("init", ["random", "density", "linear"])
def test_result_is_a_lloyd_fixed_point(init):
    torch.manual_seed(0)
    values = torch.distributions.Laplace(0.0, 0.1).sample((3000,))
    result = kmeans_1d(values, 16, init, seed=1)
    assert result.converged and len(result.labels.unique()) == 16  # no cluster left empty
    centroids, labels = result.centroids.double(), result.labels
    nearest = (values.double()[:, None] - centroids[None, :]).abs().argmin(dim=1)
    assert torch.equal(centroids[nearest], centroids[labels])  # every value at its nearest centroid
    for k in labels.unique():
        assert centroids[k].item() == pytest.approx(values[labels == k].double().mean().item(), rel=1e-6)
    assert result.wcss == pytest.approx(wcss(values, centroids, labels))


def _optimal_wcss(values: np.ndarray, k: int) -> float:
    """Exact 1-D k-means optimum by dynamic programming over sorted prefixes (O(k n^2))."""
    x = np.sort(values.astype(np.float64))
    n = len(x)
    p1, p2 = np.concatenate(([0], np.cumsum(x))), np.concatenate(([0], np.cumsum(x * x)))
    j, i = np.arange(n + 1)[:, None], np.arange(n + 1)[None, :]
    cost = np.where(i > j, p2[i] - p2[j] - (p1[i] - p1[j]) ** 2 / np.maximum(i - j, 1), np.inf)
    best = cost[0]
    for _ in range(k - 1):
        best = np.min(best[:, None] + cost, axis=0)
    return float(best[n])


@pytest.mark.parametrize("seed", range(4))
def test_refined_clustering_is_near_optimal(seed):
    rng = np.random.default_rng(seed)
    values = np.concatenate((rng.laplace(0, 0.05, 300), rng.normal(0.2, 0.02, 100)))
    optimum = _optimal_wcss(values, 8)
    assert kmeans_1d(values, 8, "linear").wcss <= optimum * 1.01
    assert kmeans_1d(values, 8, "linear", refine=False).wcss >= kmeans_1d(values, 8, "linear").wcss


def test_more_clusters_than_values_and_empty_input():
    result = kmeans_1d(torch.tensor([1.0, 2.0]), 4, "linear")
    assert result.wcss == 0.0 and sorted(result.centroids[result.labels].tolist()) == [1.0, 2.0]
    empty = kmeans_1d(torch.zeros(0), 4)
    assert empty.labels.numel() == 0 and empty.centroids.shape == (4,)
