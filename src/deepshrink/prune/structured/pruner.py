"""Structured pruning of a model: graph -> scores -> plan -> physical removal.

``prune_channels(model, input_shape, StructuredConfig(...))`` resizes ``model`` in place and
returns what it did; :func:`plan_channels` only chooses the channels (a :class:`ChannelPlan`),
which ``prune_channels(..., plan=...)`` then removes. With ``target_macs_reduction`` the MACs
counted by :func:`deepshrink.analysis.costs.model_costs` fall to at most ``(1 - target) · dense
MACs``, and below it by less than one channel step (one channel, or ``round_to`` channels, of
one group): the channels go in the order a growing ratio (per layer or global) removes them,
and the last steps fill the gap with whichever group's next step overshoots least.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
from torch import Tensor, nn

from deepshrink.analysis import count_params
from deepshrink.analysis.costs import model_costs
from deepshrink.errors import ConfigError, UserError, is_int, is_number
from deepshrink.prune.schedules import SCHEDULES, schedule_amounts
from deepshrink.prune.select import FilterFn
from deepshrink.prune.structured.graph import DependencyGraph
from deepshrink.prune.structured.group import Group
from deepshrink.prune.structured.importance import CRITERIA, channel_scores
from deepshrink.prune.structured.remove import remove_channels
from deepshrink.prune.structured.strategy import (counts_plan, global_plan, kept_channels, layer_plan, next_block,
                                                  removal_order)

__all__ = ["ChannelPlan", "StructuredResult", "StructuredConfig", "plan_channels", "prune_channels"]

@dataclass(frozen=True)
class StructuredConfig:
    """How to prune. Exactly one of ``ratio`` (fraction of channels removed, per group or, with
    ``global_ranking``, over all groups) and ``target_macs_reduction`` (fraction of MACs to
    remove). ``layer_ratios``: glob on a group's name (its first producing layer) -> ratio,
    overriding ``ratio`` per group. ``li_resnet_rule``: prune only groups that do not meet a
    residual addition (the first conv of each ResNet block; block outputs follow the shortcut).
    ``schedule``: ``oneshot`` removes the channels before fine-tuning; ``linear``/``agp`` reach
    the amount gradually over the first ``prune_epochs`` epochs of fine-tuning (default half),
    zeroing channels and removing them at the end (:mod:`.gradual`)."""

    criterion: str = "l1"
    ratio: float | None = None
    target_macs_reduction: float | None = None
    global_ranking: bool = False
    round_to: int = 1
    li_resnet_rule: bool = False
    layer_ratios: dict[str, float] = field(default_factory=dict)
    seed: int = 0
    schedule: str = "oneshot"
    prune_epochs: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "layer_ratios", dict(self.layer_ratios))
        for name, value, options in (("criterion", self.criterion, CRITERIA), ("schedule", self.schedule, SCHEDULES)):
            if value not in options:
                self._fail(name, f"must be one of {', '.join(options)}, got {value!r}")
        if self.ratio is None and self.target_macs_reduction is None:
            self._fail("ratio", "(or target_macs_reduction) must be given")
        if self.ratio is not None and self.target_macs_reduction is not None:
            self._fail("target_macs_reduction", "excludes ratio: give exactly one of them")
        for name, value in (("ratio", self.ratio), ("target_macs_reduction", self.target_macs_reduction),
                            *((f"layer_ratios[{p!r}]", r) for p, r in self.layer_ratios.items())):
            if value is not None and not (is_number(value) and 0.0 <= value < 1.0):
                self._fail(name, f"must be in [0, 1), got {value!r}")
        if not (is_int(self.round_to) and self.round_to >= 1):
            self._fail("round_to", f"must be an integer >= 1, got {self.round_to!r}")
        if self.prune_epochs is not None and not (is_int(self.prune_epochs) and self.prune_epochs >= 1):
            self._fail("prune_epochs", f"must be an integer >= 1, got {self.prune_epochs!r}")

    def _fail(self, field: str, problem: str):
        raise ConfigError("StructuredConfig", field, problem)

    def check_epochs(self, epochs: int) -> None:
        """A :class:`ConfigError` when the schedule does not fit in ``epochs`` epochs of fine-tuning."""
        if self.schedule != "oneshot" and epochs < 1:
            self._fail("schedule", f"{self.schedule!r} prunes while fine-tuning: give at least 1 epoch")
        if self.prune_epochs is not None and self.prune_epochs > max(epochs, 1):
            self._fail("prune_epochs", f"must be at most the {max(epochs, 1)} fine-tuning epochs, got {self.prune_epochs}")

    def record(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if value is not None}

    def ramp_epochs(self, epochs: int) -> int:
        """Epochs over which a gradual schedule reaches the amount."""
        return self.prune_epochs or max(1, epochs // 2)

    def fractions(self, epochs: int) -> dict[int, float]:
        """{epoch (0-based): fraction of the final amount to reach before it} for ``epochs``
        epochs of fine-tuning; one-shot: ``{0: 1.0}``."""
        return schedule_amounts(self.schedule, 1.0, self.ramp_epochs(epochs))

    def scaled(self, fraction: float) -> "StructuredConfig":
        """One-shot settings for ``fraction`` of this amount (ratio, layer ratios or MAC target)."""
        def scale(value: float | None) -> float | None:
            return None if value is None else value * fraction

        return replace(self, ratio=scale(self.ratio), target_macs_reduction=scale(self.target_macs_reduction),
                       layer_ratios={k: v * fraction for k, v in self.layer_ratios.items()},
                       schedule="oneshot", prune_epochs=None)


@dataclass
class StructuredResult:
    """Output filters of each pruned group's first producer (before, after), resized modules,
    skipped layers (name -> reason), and MACs/parameters per input before and after."""

    channels: dict[str, tuple[int, int]]
    resized: list[str]
    skipped: dict[str, str]
    macs_before: int
    macs_after: int
    params_before: int
    params_after: int
    ratio: float

    @property
    def macs_reduction(self) -> float:
        return 1.0 - self.macs_after / self.macs_before

    def record(self) -> dict[str, Any]:
        """As plain data (for a model file's history)."""
        return {"channels": {k: list(v) for k, v in self.channels.items()}, "skipped": self.skipped,
                "macs_before": self.macs_before, "macs_after": self.macs_after,
                "params_before": self.params_before, "params_after": self.params_after,
                "macs_reduction": self.macs_reduction, "ratio": self.ratio}


def _macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    return model_costs(model, input_shape).totals["macs"]


def _candidates(model: nn.Module, graph: DependencyGraph, settings: StructuredConfig,
                skipped: dict[str, str], filter_fn: FilterFn | None = None) -> list[tuple[Group, Tensor]]:
    """(group, scores) of every group the settings (and ``filter_fn``, asked about each group's
    first producing layer) allow pruning; notes the others in ``skipped``."""
    generator = torch.Generator().manual_seed(settings.seed)
    scored = []
    for group in graph.groups:
        if filter_fn is not None and not filter_fn(model.get_submodule(group.name), group.name):
            skipped[group.name] = "left out by filter_fn"
            continue
        if settings.li_resnet_rule and group.residual:
            skipped[group.name] = "residual block output (Li et al. rule: follows the shortcut)"
            continue
        scores = channel_scores(model, group, settings.criterion, generator=generator)
        if scores is None:
            skipped[group.name] = f"no BatchNorm to score with {settings.criterion}"
            continue
        scored.append((group, scores))
    if not scored:
        raise UserError("no layer of this model can be pruned structurally"
                        + (f" ({'; '.join(f'{k}: {v}' for k, v in list(skipped.items())[:3])})" if skipped else ""))
    return scored


def _plan(scored, settings: StructuredConfig, ratio: float) -> dict[Group, Tensor]:
    if settings.global_ranking:
        return global_plan(scored, ratio, round_to=settings.round_to, normalize=settings.criterion != "bn-scale")
    return layer_plan(scored, ratio, round_to=settings.round_to, layer_ratios=settings.layer_ratios)


def _plan_for_target(model: nn.Module, input_shape, scored, settings: StructuredConfig,
                     dense_macs: int) -> dict[Group, Tensor]:
    """The plan whose pruned model has at most the target MACs and, within that, the most MACs
    the channel steps allow: the longest prefix of the removal order that stays above the
    target (bisection), then one rounding step of one group at a time (:func:`_fill`)."""
    target = (1.0 - settings.target_macs_reduction) * dense_macs
    base, order = removal_order(scored, global_ranking=settings.global_ranking,
                                normalize=settings.criterion != "bn-scale", layer_ratios=settings.layer_ratios)
    macs_of = _MacsOfCounts(model, input_shape, scored, settings.round_to)

    def prefix(length: int) -> list[int]:
        counts = list(base)
        for index in order[:length]:
            counts[index] += 1
        return counts

    deepest = macs_of(prefix(len(order)))
    if deepest > target:
        raise UserError(f"a MAC reduction of {settings.target_macs_reduction:.0%} is out of reach: "
                        f"pruning every prunable group as far as allowed removes {1.0 - deepest / dense_macs:.1%}")
    if macs_of(base) <= target:
        return counts_plan(scored, base, settings.round_to)
    low, high = 0, len(order)  # prefix(low) stays above the target, prefix(high) reaches it
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if macs_of(prefix(middle)) <= target else (middle, high)
    counts = _fill(scored, prefix(low), base, order, settings.round_to, macs_of, target) or prefix(high)
    return counts_plan(scored, counts, settings.round_to)


class _MacsOfCounts:
    """MACs of the model pruned by ``counts_plan(scored, counts, round_to)``, measured on a copy
    and remembered by kept channel counts."""

    def __init__(self, model: nn.Module, input_shape, scored, round_to: int):
        self.model, self.input_shape, self.scored, self.round_to = model, input_shape, scored, round_to
        self.known: dict[tuple[int, ...], int] = {}

    def __call__(self, counts: list[int]) -> int:
        key = tuple(kept_channels(group.n, group.n - count, self.round_to)
                    for (group, _), count in zip(self.scored, counts))
        if key not in self.known:
            trial = copy.deepcopy(self.model)  # groups name modules, so a plan applies to a copy too
            remove_channels(trial, counts_plan(self.scored, counts, self.round_to))
            self.known[key] = _macs(trial, self.input_shape)
        return self.known[key]


def _fill(scored, counts: list[int], base: list[int], order: list[int], round_to: int,
          macs_of, target: float) -> list[int] | None:
    """From ``counts`` (above the target), add one rounding step (:func:`next_block`) of one group
    at a time: while some step stays above the target, the one earliest in ``order``; then the
    step that reaches the target with the most MACs left. The result lies below the target by
    less than the smallest step still open to any group. None when no group can shrink.

    MACs only fall as counts grow, so a step once found to reach the target is not tried again
    until the end."""
    positions: list[list[int]] = [[] for _ in scored]
    for position, index in enumerate(order):
        positions[index].append(position)
    reaching: set[tuple[int, int]] = set()
    while True:
        steps = []  # (position in order of the step's last removal, counts after the step)
        for i, (group, _) in enumerate(scored):
            count = next_block(group.n, counts[i], round_to)
            if count is not None and count - base[i] <= len(positions[i]):
                steps.append((positions[i][count - base[i] - 1], [*counts[:i], count, *counts[i + 1:]]))
        if not steps:
            return None
        steps.sort()
        above = next((trial for _, trial in steps if _step(trial, counts) not in reaching
                      and not _reaches(trial, counts, macs_of, target, reaching)), None)
        if above is None:
            return max(steps, key=lambda step: (macs_of(step[1]), -step[0]))[1]
        counts = above


def _step(trial: list[int], counts: list[int]) -> tuple[int, int]:
    """(group index, count) of the one group ``trial`` changes."""
    return next((i, c) for i, (c, old) in enumerate(zip(trial, counts)) if c != old)


def _reaches(trial, counts, macs_of, target: float, reaching: set[tuple[int, int]]) -> bool:
    if macs_of(trial) > target:
        return False
    reaching.add(_step(trial, counts))
    return True


@dataclass(frozen=True)
class ChannelPlan:
    """Which channels to remove: ``removed`` maps every candidate group to the (ascending)
    indices of its channels to remove (possibly none); ``skipped``: layers left alone -> why;
    ``ratio``: the channel ratio the plan was made with."""

    removed: dict[Group, Tensor]
    skipped: dict[str, str]
    ratio: float


def plan_channels(model: nn.Module, input_shape: tuple[int, ...], settings: StructuredConfig,
                  graph: DependencyGraph | None = None, filter_fn: FilterFn | None = None) -> ChannelPlan:
    """The channels ``settings`` remove from ``model`` (scored on its current weights, which are
    not changed); ``graph``: the model's dependency graph, when already built; ``filter_fn``:
    see :func:`prune_channels`."""
    graph = graph or DependencyGraph(model, input_shape)
    skipped = dict(graph.skipped)
    scored = _candidates(model, graph, settings, skipped, filter_fn)
    if settings.ratio is not None:
        return ChannelPlan(_plan(scored, settings, settings.ratio), skipped, settings.ratio)
    removed = _plan_for_target(model, input_shape, scored, settings, _macs(model, input_shape))
    ratio = sum(len(index) for index in removed.values()) / sum(group.n for group, _ in scored)
    return ChannelPlan(removed, skipped, ratio)


def input_shape_of(example_input: Tensor | tuple[int, ...]) -> tuple[int, ...]:
    """The shape of one input: a batch tensor's shape without its first dimension, or the shape given."""
    if isinstance(example_input, Tensor):
        if example_input.dim() < 2:
            raise UserError(f"an example input needs a batch dimension, got shape {tuple(example_input.shape)}")
        return tuple(example_input.shape[1:])
    return tuple(int(v) for v in example_input)


def _filter_counts(group: Group, removed: int) -> tuple[int, int]:
    """Output filters of the group's first producer before and after removing ``removed`` group
    channels (a grouped conv's channel is one filter in each of its groups)."""
    per_channel = group.slices[(group.name, "out")].shape[1]
    return group.n * per_channel, (group.n - removed) * per_channel


def prune_channels(model: nn.Module, example_input: Tensor | tuple[int, ...], settings: StructuredConfig,
                   filter_fn: FilterFn | None = None, plan: ChannelPlan | None = None) -> StructuredResult:
    """Prune ``model`` (resized in place) for inputs like ``example_input`` (a batch tensor, or
    the shape (C, H, W) of one input): remove ``plan``'s channels, by default those
    :func:`plan_channels` chooses with ``settings``.

    Every channel group the dependency graph can resize is a candidate (the classifier's outputs
    never are); ``filter_fn(module, fqn)``, asked about a group's first producing layer, keeps
    the groups it rejects whole."""
    input_shape = input_shape_of(example_input)
    plan = plan or plan_channels(model, input_shape, settings, filter_fn=filter_fn)
    dense_macs, dense_params = _macs(model, input_shape), count_params(model).total
    resized = remove_channels(model, plan.removed)
    channels = {group.name: _filter_counts(group, len(index)) for group, index in plan.removed.items()}
    return StructuredResult(channels, resized, plan.skipped, dense_macs, _macs(model, input_shape),
                            dense_params, count_params(model).total, plan.ratio)

