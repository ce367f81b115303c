"""Sensitivity analysis: accuracy as one layer at a time is magnitude-pruned to each sparsity of
a grid (the layer restored afterwards), a plot of it, and per-layer targets derived from it."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import torch
from torch import nn

from deepshrink.files import atomic_path
from deepshrink.prune.criteria import magnitude_mask
from deepshrink.prune.mask import weight_mask

Evaluate = Callable[[nn.Module], float]  # model -> accuracy (0..1)


@dataclass(frozen=True)
class Sensitivity:
    """``accuracy[layer][j]``: accuracy with only ``layer`` pruned to ``grid[j]``."""

    baseline: float
    grid: tuple[float, ...]
    accuracy: dict[str, list[float]]

    def rows(self) -> list[dict]:
        """One row per layer: ``{"layer": name, "0.3": acc, ...}`` (plain data for JSON/tables)."""
        return [{"layer": name, **{f"{q:g}": acc for q, acc in zip(self.grid, accs)}}
                for name, accs in self.accuracy.items()]


@contextlib.contextmanager
def _pruned(module: nn.Module, sparsity: float) -> Iterator[None]:
    """``module``'s weight magnitude-pruned to ``sparsity`` inside the block, restored after."""
    found = weight_mask(module)
    with torch.no_grad():
        if found is not None:
            saved, target = found.mask.clone(), found.mask
            target.mul_(magnitude_mask(module.weight, sparsity))
        else:
            saved, target = module.weight.detach().clone(), module.weight
            target.mul_(magnitude_mask(target, sparsity))
    try:
        yield
    finally:
        with torch.no_grad():
            target.copy_(saved)


def sensitivity_scan(model: nn.Module, layers: Sequence[str], grid: Sequence[float],
                     evaluate: Evaluate) -> Sensitivity:
    """Evaluate ``model`` with each layer of ``layers`` alone pruned to each sparsity of ``grid``."""
    baseline = evaluate(model)
    accuracy = {}
    for name in layers:
        module = model.get_submodule(name)
        accuracy[name] = []
        for sparsity in grid:
            with _pruned(module, sparsity):
                accuracy[name].append(evaluate(model))
    return Sensitivity(baseline, tuple(grid), accuracy)


def sensitivity_targets(result: Sensitivity, tolerance: float) -> dict[str, float]:
    """Per layer, the largest grid sparsity up to which (in grid order) every accuracy stays
    within ``tolerance`` (a fraction, e.g. 0.01) of the baseline; 0.0 if the first does not."""
    targets = {}
    for name, accs in result.accuracy.items():
        target = 0.0
        for sparsity, acc in zip(result.grid, accs):
            if result.baseline - acc > tolerance:
                break
            target = sparsity
        targets[name] = target
    return targets


def plot_sensitivity(result: Sensitivity, path: str | os.PathLike) -> None:
    """A PNG: accuracy (%) against sparsity, one line per layer, the baseline dashed."""
    from matplotlib.figure import Figure  # no pyplot: leaves the user's backend alone

    fig = Figure(figsize=(8, 5))
    ax = fig.subplots()
    for name, accs in result.accuracy.items():
        ax.plot(result.grid, [100 * a for a in accs], marker="o", markersize=3, label=name)
    ax.axhline(100 * result.baseline, color="black", linestyle="--", linewidth=1, label="dense")
    ax.set_xlabel("sparsity of the one pruned layer")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.legend(fontsize="x-small", ncol=2)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
