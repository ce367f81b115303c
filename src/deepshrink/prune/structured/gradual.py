"""Gradual structured pruning during fine-tuning: channels are zeroed on a schedule, then removed.

Before each scheduled epoch the channels to prune are chosen again on the current weights (for
that epoch's fraction of the amount) and zeroed: each producer's output filter and bias, and
the BatchNorm's weight, bias and running mean, so the channel outputs exactly 0. Until the last
scheduled epoch the zeroed weights keep training and may grow back and win their place again
(soft filter pruning, He et al. 2018); from the last one on, the final channel set is fixed and
kept at zero after every optimiser step. After training, ``prune_channels(model, shape,
settings, plan=hook.plan)`` removes those channels, which changes outputs only by float rounding.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from deepshrink.prune.structured.graph import DependencyGraph
from deepshrink.prune.structured.group import Group
from deepshrink.prune.structured.pruner import ChannelPlan, StructuredConfig, plan_channels
from deepshrink.prune.structured.remove import attached_error
from deepshrink.train import TrainHook

__all__ = ["GradualChannelPruning", "zero_channels"]

_ZEROED = {"out": ("weight", "bias"), "dw": ("weight", "bias"), "bn": ("weight", "bias", "running_mean")}


@torch.no_grad()
def zero_channels(model: nn.Module, removed: dict[Group, Tensor]) -> None:
    """Set the producers (Conv2d/Linear output filters and biases, depthwise filters) and the
    BatchNorm weight, bias and running mean of channels ``removed[group]`` to 0: each such
    channel then outputs exactly 0, in training and in eval mode."""
    for group, channels in removed.items():
        if len(channels) == 0:
            continue
        for (name, role), indices in group.removal(channels).items():
            module = model.get_submodule(name)
            for attr in _ZEROED.get(role, ()):
                tensor = getattr(module, attr, None)
                if tensor is not None:
                    tensor.index_fill_(0, indices.to(tensor.device), 0.0)


class GradualChannelPruning(TrainHook):
    """Prunes ``model`` to ``settings`` over ``epochs`` epochs of fine-tuning, on
    ``settings.schedule``; :attr:`plan` holds the channels to remove once training is over.

    ``model`` must be the (plain, un-parametrized) model the trainer will train; the dependency
    graph is traced from it for inputs of shape ``input_shape`` (C, H, W) before training.
    """

    def __init__(self, model: nn.Module, input_shape: tuple[int, ...], settings: StructuredConfig,
                 epochs: int):
        settings.check_epochs(epochs)
        attached = next((name for name, m in model.named_modules() if parametrize.is_parametrized(m)), None)
        if attached is not None:
            raise attached_error(attached)
        self.input_shape = tuple(input_shape)
        self.settings = settings
        self.fractions = settings.fractions(epochs)
        self.last_epoch = max(self.fractions)
        self.graph = DependencyGraph(model, self.input_shape)
        self.plan: ChannelPlan | None = None
        self._fixed = False

    def on_epoch_start(self, trainer, epoch: int) -> None:
        if epoch in self.fractions:
            scoring = copy.deepcopy(trainer.model).cpu()  # plans (and MAC bisection) run on CPU
            self.plan = plan_channels(scoring, self.input_shape, self.settings.scaled(self.fractions[epoch]),
                                      self.graph)
        self._fixed = epoch >= self.last_epoch
        if self.plan is not None:
            zero_channels(trainer.model, self.plan.removed)

    def after_step(self, trainer) -> None:
        if self._fixed:
            zero_channels(trainer.model, self.plan.removed)

    def state_dict(self) -> dict[str, Any]:
        if self.plan is None:
            return {}
        return {"removed": {group.name: index.tolist() for group, index in self.plan.removed.items()},
                "skipped": dict(self.plan.skipped), "ratio": self.plan.ratio}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        groups = {group.name: group for group in self.graph.groups}
        removed = {groups[name]: torch.tensor(index, dtype=torch.long) for name, index in state["removed"].items()}
        self.plan = ChannelPlan(removed, dict(state["skipped"]), float(state["ratio"]))
