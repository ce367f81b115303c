"""Accuracy against average MACs per input of an early-exit model, over a threshold sweep.

An input that leaves at exit i has run the backbone up to exit point i and the heads of
exits 0..i; one that reaches the end has run the whole backbone and every head. MACs come
from :func:`deepshrink.analysis.costs.model_costs` (one input, forward order of the layers).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import torch

from deepshrink.analysis.costs import model_costs
from deepshrink.models.early_exit import EarlyExitModel, leaves_at

__all__ = ["SweepPoint", "collect_exit_logits", "exit_macs", "first_exits", "threshold_sweep"]


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
    macs = torch.tensor(exit_macs(model), dtype=torch.float64)
    points = []
    for threshold in thresholds:
        taken = first_exits(logits, threshold, criterion)
        predicted = logits[torch.arange(len(taken)), taken].argmax(dim=1)
        fractions = torch.bincount(taken, minlength=logits.shape[1]).double() / max(len(taken), 1)
        points.append(SweepPoint(float(threshold), float((predicted == labels).double().mean()),
                                 float(fractions @ macs), fractions.tolist()))
    return points
