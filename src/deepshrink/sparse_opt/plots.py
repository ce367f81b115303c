"""Plots of a suite of runs: log(L) per step, and each run's weight trajectories (PNG, Agg)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from deepshrink.files import atomic_path
from deepshrink.sparse_opt.runner import Trajectory

__all__ = ["plot_losses", "plot_weights"]

STYLES = ("-", "--", "-.", ":", (0, (5, 1, 1, 1, 1, 1)))  # one line style per method


def plot_losses(runs: dict[str, Trajectory], path: str | os.PathLike) -> Path:
    """One line of log(L) against the step per run."""
    fig = Figure(figsize=(8, 5))
    ax = fig.add_subplot()
    styles = {}
    for name, run in runs.items():
        style = styles.setdefault(name.split("/")[0], STYLES[len(styles) % len(STYLES)])
        with np.errstate(divide="ignore"):
            ax.plot(np.log(run.losses), linestyle=style, label=name)
    ax.set(xlabel="step", ylabel="log L", title="log L = log Σ (X_i W − y_i)²")
    ax.legend(fontsize="x-small", ncol=2)
    return _save(fig, path)


def plot_weights(runs: dict[str, Trajectory], path: str | os.PathLike) -> Path:
    """A panel per run with one line per weight against the step."""
    cols = 4
    rows = math.ceil(len(runs) / cols)
    fig = Figure(figsize=(4 * cols, 3 * rows), layout="constrained")
    for index, (name, run) in enumerate(runs.items()):
        ax = fig.add_subplot(rows, cols, index + 1)
        for j in range(run.weights.shape[1]):
            ax.plot(run.weights[:, j], label=f"w{j + 1}")
        ax.set_title(name, fontsize="small")
        ax.axhline(0.0, color="grey", linewidth=0.5)
    fig.axes[0].legend(fontsize="x-small")
    return _save(fig, path)


def _save(fig: Figure, path: str | os.PathLike) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return path
