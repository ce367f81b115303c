"""Accuracy against average MACs per input of an early-exit model, over a threshold sweep.

An input that leaves at exit i has run the backbone up to exit point i and the heads of
exits 0..i; one that reaches the end has run the whole backbone and every head. MACs come
from :func:`deepshrink.analysis.costs.model_costs` (one input, forward order of the layers).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import torch

from deepshrink.analysis.costs import model_costs
from deepshrink.errors import UserError
from deepshrink.files import atomic_path
from deepshrink.models.early_exit import CRITERIA, EarlyExitModel, leaves_at

__all__ = ["SweepPoint", "backbone_macs", "check_thresholds", "collect_exit_logits", "default_thresholds",
           "exit_macs", "first_exits", "plot_sweep", "sweep_logits", "threshold_sweep"]


@dataclass(frozen=True)
class SweepPoint:
    """One threshold's outcome; ``exit_fractions[i]``: share of inputs leaving at exit i (last: the end)."""

    threshold: float
    accuracy: float     # 0..1
    avg_macs: float     # per input
    exit_fractions: list[float]


def exit_macs(model: EarlyExitModel) -> list[int]:
    """MACs of one input (of ``model.input_shape``) leaving at each exit; the last entry is the full model."""
    rows = model_costs(model, model.input_shape).layers
    backbone = [(row.name.removeprefix("backbone."), row.macs) for row in rows if row.name.startswith("backbone.")]
    heads = [sum(row.macs for row in rows if row.name.startswith(f"exits.{i}.")) for i in range(len(model.exits))]
    cumulative, total = [], 0
    for _, macs in backbone:
        total += macs
        cumulative.append(total)
    costs = []
    for i, point in enumerate(model.exit_points):
        inside = [k for k, (name, _) in enumerate(backbone) if name == point or name.startswith(point + ".")]
        if not inside:
            raise ValueError(f"the cost report has no layer inside exit point {point!r}")
        costs.append(cumulative[inside[-1]] + sum(heads[: i + 1]))
    return costs + [total + sum(heads)]


@torch.no_grad()
def collect_exit_logits(model: EarlyExitModel, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                        device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of every exit and the end, (N, exits + 1, classes), and the labels (N,), in eval mode."""
    was_training = model.training
    model.eval()
    logits, labels = [], []
    try:
        for inputs, targets in batches:
            final = model(inputs.to(device))
            logits.append(torch.stack([*model.exit_logits, final], dim=1).float().cpu())
            labels.append(targets.cpu())
    finally:
        model.train(was_training)
    return torch.cat(logits), torch.cat(labels)


def first_exits(logits: torch.Tensor, threshold: float, criterion: str = "confidence") -> torch.Tensor:
    """(N,) index of the first exit each input leaves at, from ``logits`` (N, exits + 1, classes);
    the last (the backbone's classifier) takes the rest."""
    leave = torch.stack([leaves_at(logits[:, i], threshold, criterion) for i in range(logits.shape[1] - 1)], dim=1)
    leave = torch.cat([leave, leave.new_ones(leave.shape[0], 1)], dim=1)
    return leave.int().argmax(dim=1)  # argmax returns the first maximum


def threshold_sweep(model: EarlyExitModel, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                    thresholds: Sequence[float], criterion: str = "confidence",
                    device: torch.device | str = "cpu") -> list[SweepPoint]:
    """Accuracy and average MACs per input at each threshold, from one pass over ``batches``.

    Gives what :meth:`EarlyExitModel.predict_with_exits` would predict at each threshold.
    """
    logits, labels = collect_exit_logits(model, batches, device)
    return sweep_logits(logits, labels, exit_macs(model), thresholds, criterion)


def sweep_logits(logits: torch.Tensor, labels: torch.Tensor, macs: Sequence[float],
                 thresholds: Sequence[float], criterion: str = "confidence") -> list[SweepPoint]:
    """:func:`threshold_sweep` on collected logits (N, exits + 1, classes), labels (N,) and the
    MACs of leaving at each exit (:func:`exit_macs`)."""
    costs = torch.tensor(list(macs), dtype=torch.float64)
    points = []
    for threshold in thresholds:
        taken = first_exits(logits, threshold, criterion)
        predicted = logits[torch.arange(len(taken)), taken].argmax(dim=1)
        fractions = torch.bincount(taken, minlength=logits.shape[1]).double() / max(len(taken), 1)
        points.append(SweepPoint(float(threshold), float((predicted == labels).double().mean()),
                                 float(fractions @ costs), fractions.tolist()))
    return points


def backbone_macs(model: EarlyExitModel) -> int:
    """MACs of one input through the backbone alone (the model without its exits)."""
    return model_costs(model.backbone, model.input_shape).totals["macs"]


def check_thresholds(thresholds: Sequence[float], criterion: str, num_classes: int) -> None:
    """A :class:`UserError` unless every threshold lies in the criterion's range: a confidence
    (max softmax probability) in [0, 1], an entropy in [0, ln num_classes] nats."""
    if criterion not in CRITERIA:
        raise UserError(f"unknown exit criterion {criterion!r}; choose one of: {', '.join(CRITERIA)}")
    if not thresholds:
        raise UserError("give at least one threshold")
    high = 1.0 if criterion == "confidence" else math.log(num_classes)
    bad = [t for t in thresholds if not 0.0 <= t <= high]
    if bad:
        unit = "" if criterion == "confidence" else f" nats (ln {num_classes})"
        raise UserError(f"{criterion} thresholds must lie in [0, {high:.4g}]{unit}; "
                        f"out of range: {', '.join(f'{t:g}' for t in bad)}")


def default_thresholds(criterion: str, num_classes: int) -> list[float]:
    """A sweep from eager to cautious: confidences 0.5..0.999, or entropies as shares of ln num_classes."""
    if criterion == "confidence":
        return [0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999]
    top = math.log(num_classes)
    return [round(share * top, 4) for share in (0.5, 0.3, 0.2, 0.1, 0.05, 0.02, 0.01)]


def plot_sweep(points: Sequence[SweepPoint], path: str | os.PathLike, *, full_macs: float,
               full_accuracy: float, criterion: str = "confidence") -> Path:
    """A PNG: top-1 accuracy (%) against average MACs per input (% of ``full_macs``, the model
    without exits), one labelled point per threshold and the model without exits as a star."""
    from matplotlib.figure import Figure  # no pyplot: leaves the user's backend alone

    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    points = sorted(points, key=lambda p: p.avg_macs)
    xs = [100 * p.avg_macs / full_macs for p in points]
    ys = [100 * p.accuracy for p in points]
    ax.plot(xs, ys, marker="o", label=f"early exits ({criterion} threshold)")
    for x, y, point in zip(xs, ys, points):
        ax.annotate(f"{point.threshold:g}", (x, y), textcoords="offset points", xytext=(4, -10), fontsize="x-small")
    ax.plot([100.0], [100 * full_accuracy], marker="*", markersize=12, linestyle="none", label="without exits")
    ax.set_xlabel("average MACs per image (% of the model without exits)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    return path
