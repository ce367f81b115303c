"""The channel-sensitivity job: Li et al.'s filter-selection experiment on a model file (each
channel group alone pruned by each criterion at each ratio, no retraining), with its plot:
one row of panels per criterion, one panel per stage, one line per group (Li et al. 2017,
Figure 2); random selection is drawn as the mean over its seeds with a band of +- one std.
"""

from __future__ import annotations

import os
import sys
from typing import Sequence

import numpy as np

from deepshrink.data import ImageDataset
from deepshrink.files import atomic_path
from deepshrink.pipeline.datasets import check_fits
from deepshrink.pipeline.evaluate import accuracy_on
from deepshrink.models import load_model
from deepshrink.prune.structured.sensitivity import ChannelSensitivity, channel_sensitivity

__all__ = ["channel_sensitivity_job", "plot_channel_sensitivity"]

TITLES = {"l1": "smallest L1 filters pruned", "random": "random filters pruned",
          "l1-largest": "largest L1 filters pruned"}


def channel_sensitivity_job(model_file: str | os.PathLike, test_set: ImageDataset, *,
                            criteria: Sequence[str], ratios: Sequence[float], seeds: Sequence[int],
                            device: str = "auto", batch_size: int = 500, log=sys.stderr) -> ChannelSensitivity:
    """The scan of ``model_file`` on ``test_set`` (progress: one line per group and criterion on ``log``)."""
    model, info = load_model(model_file)
    check_fits(info, test_set)

    def evaluate(candidate) -> float:
        return accuracy_on(candidate, info, test_set, device, batch_size)

    def progress(text: str) -> None:
        print(f"channel-sensitivity: {text}", file=log, flush=True)

    return channel_sensitivity(model.cpu(), tuple(info.input.shape), evaluate, criteria=criteria,
                               ratios=ratios, seeds=seeds, progress=progress)


def _stage(group: str) -> str:
    """A group's stage: its top-level module (``layer2`` of ``layer2.3.conv1``)."""
    return group.split(".")[0]


def plot_channel_sensitivity(result: ChannelSensitivity, path: str | os.PathLike, title: str = "") -> None:
    """A PNG: rows = criteria, columns = stages; accuracy (%) against the fraction of the one
    group's filters pruned, one line per group, the unpruned model dashed."""
    from matplotlib.figure import Figure  # no pyplot: leaves the user's backend alone

    criteria = list(result.accuracy)
    groups = list(next(iter(result.accuracy.values())))
    stages = list(dict.fromkeys(_stage(g) for g in groups))
    fig = Figure(figsize=(4.2 * len(stages), 3.2 * len(criteria)))
    axes = np.atleast_2d(fig.subplots(len(criteria), len(stages), sharex=True, sharey=True, squeeze=False))
    x = 100 * np.asarray(result.ratios)
    for row, criterion in enumerate(criteria):
        for col, stage in enumerate(stages):
            ax = axes[row, col]
            members = [g for g in groups if _stage(g) == stage]
            colours = [f"C{i % 10}" for i in range(len(members))]
            for group, colour in zip(members, colours):
                runs = 100 * np.asarray(result.accuracy[criterion][group])
                mean = runs.mean(axis=0)
                ax.plot(x, mean, marker="o", markersize=2.5, linewidth=1, color=colour, label=group)
                if len(runs) > 1:
                    std = runs.std(axis=0)
                    ax.fill_between(x, mean - std, mean + std, color=colour, alpha=0.15, linewidth=0)
            ax.axhline(100 * result.baseline, color="black", linestyle="--", linewidth=1)
            ax.set_title(f"{stage}: {TITLES.get(criterion, criterion)}", fontsize=9)
            ax.grid(alpha=0.3)
            if row == len(criteria) - 1:
                ax.set_xlabel("filters pruned away (%)")
            if col == 0:
                ax.set_ylabel("test top-1 (%)")
            if row == 0:
                ax.legend(fontsize=6, ncol=2, loc="lower left")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
