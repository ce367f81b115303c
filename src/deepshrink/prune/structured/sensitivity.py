"""Channel sensitivity: accuracy as one channel group at a time loses a fraction of its
channels, chosen by each criterion (Li et al. 2017, Figure 2: smallest L1 against random and
largest L1), without retraining. The model itself is never changed: every point prunes a copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

from torch import nn

from deepshrink.errors import UserError
from deepshrink.models.attach import copy_model
from deepshrink.prune.structured.graph import DependencyGraph
from deepshrink.prune.structured.pruner import StructuredConfig, plan_channels
from deepshrink.prune.structured.remove import remove_channels

__all__ = ["ChannelSensitivity", "channel_sensitivity", "sensitivity_groups"]

Evaluate = Callable[[nn.Module], float]  # model -> accuracy (0..1)


@dataclass(frozen=True)
class ChannelSensitivity:
    """``accuracy[criterion][group]``: one list per seed of accuracies, one per ratio of ``ratios``
    (deterministic criteria have one seed)."""

    baseline: float
    ratios: tuple[float, ...]
    accuracy: dict[str, dict[str, list[list[float]]]]

    def rows(self) -> list[dict]:
        """Plain data: one row per (criterion, group, seed)."""
        return [{"criterion": criterion, "group": group, "seed": seed,
                 **{f"{r:g}": acc for r, acc in zip(self.ratios, accs)}}
                for criterion, groups in self.accuracy.items() for group, runs in groups.items()
                for seed, accs in enumerate(runs)]


def sensitivity_groups(graph: DependencyGraph, li_resnet_rule: bool = True) -> list[str]:
    """The groups to scan: every prunable group, or with ``li_resnet_rule`` only those that do
    not meet a residual addition (the first conv of each ResNet block, as Li et al. scan)."""
    return [group.name for group in graph.groups if not (li_resnet_rule and group.residual)]


def _points(criteria: Sequence[str], seeds: Sequence[int]) -> Iterator[tuple[str, int, int]]:
    for criterion in criteria:
        for run, seed in enumerate(seeds if criterion == "random" else seeds[:1]):
            yield criterion, run, seed


def channel_sensitivity(model: nn.Module, input_shape: tuple[int, ...], evaluate: Evaluate, *,
                        criteria: Sequence[str] = ("l1", "random", "l1-largest"),
                        ratios: Sequence[float] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
                        seeds: Sequence[int] = (0, 1, 2), groups: Sequence[str] | None = None,
                        progress: Callable[[str], None] | None = None) -> ChannelSensitivity:
    """Evaluate copies of ``model`` with one group of ``groups`` (default:
    :func:`sensitivity_groups`) at a time losing each fraction of ``ratios`` of its channels,
    chosen by each criterion (``random`` once per seed of ``seeds``)."""
    if not seeds:
        raise UserError("give at least one seed")
    graph = DependencyGraph(model, input_shape)
    names = list(groups) if groups is not None else sensitivity_groups(graph)
    unknown = sorted(set(names) - {group.name for group in graph.groups})
    if unknown:
        raise UserError(f"not a prunable channel group: {', '.join(unknown)}")
    accuracy: dict[str, dict[str, list[list[float]]]] = {c: {name: [] for name in names} for c in criteria}
    for criterion, run, seed in _points(criteria, list(seeds)):
        for name in names:
            if progress:
                progress(f"{criterion} seed {seed} {name}")
            accuracy[criterion][name].append([_pruned_accuracy(model, input_shape, graph, evaluate, criterion,
                                                               name, ratio, seed) for ratio in ratios])
    return ChannelSensitivity(evaluate(model), tuple(ratios), accuracy)


def _pruned_accuracy(model: nn.Module, input_shape, graph: DependencyGraph, evaluate: Evaluate,
                     criterion: str, group: str, ratio: float, seed: int) -> float:
    """Accuracy of a copy of ``model`` whose ``group`` alone lost ``ratio`` of its channels."""
    config = StructuredConfig(criterion, ratio=0.0, layer_ratios={group: ratio}, seed=seed)
    plan = plan_channels(model, input_shape, config, graph=graph)
    trial = copy_model(model)
    remove_channels(trial, plan.removed)  # groups name modules, so the plan applies to the copy
    return evaluate(trial)
