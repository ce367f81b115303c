"""The public verb of fine-grained pruning: ``prune_(model, PruneConfig(...), filter_fn)`` masks
the selected layers in place, once (post-training pruning; fine-tune afterwards with any
training loop). Pruning on a schedule during training is a training hook:
:func:`pruning_hook` builds it from the same config.

    prune_(model, PruneConfig(sparsity=0.7, scope="global"))
    prune_(model, PruneConfig(sparsity=0.5), filter_fn=lambda m, fqn: fqn.startswith("layer3"))
"""

from __future__ import annotations

from torch import nn

from deepshrink.errors import ConfigError, UserError
from deepshrink.prune.apply import attach_full_masks, prune_layers
from deepshrink.prune.config import PruneConfig
from deepshrink.prune.criteria import MaskMethod, mask_method
from deepshrink.prune.mask import masks_of
from deepshrink.prune.schedules import PruneSchedule
from deepshrink.prune.select import FilterFn, prunable_layers

__all__ = ["prune_", "pruned_layers", "pruning_hook", "selected_layers"]


def selected_layers(model: nn.Module, config: PruneConfig, filter_fn: FilterFn | None = None) -> list[str]:
    """The qualified names of the layers ``config`` (and ``filter_fn``) select; an error if none."""
    names = list(prunable_layers(model, config.exclude, exclude_first_last=config.exclude_first_last,
                                 filter_fn=filter_fn, owner="PruneConfig"))
    if not names:
        raise UserError("no Conv2d/Linear layer is left to prune after the exclusions")
    return names


def _method(config: PruneConfig) -> MaskMethod:
    return mask_method(config.criterion, config.scope, config.seed, config.layer_cap)


def prune_(model: nn.Module, config: PruneConfig, filter_fn: FilterFn | None = None) -> nn.Module:
    """Mask the selected layers of ``model`` as ``config`` says (in place; returns it).

    Each layer gets a ``WeightMask`` parametrization (its pruned weights read 0 and get no
    gradient); the weights behind the masks are zeroed too. Scores come from the current
    effective weights, so pruning an already pruned model only adds to its masks.
    """
    if config.schedule != "oneshot":
        raise ConfigError("PruneConfig", "schedule", f"{config.schedule!r} prunes during training: "
                                                     "use pruning_hook(...) with your Trainer")
    prune_layers(model, selected_layers(model, config, filter_fn), _method(config), config.amount)
    return model


def pruning_hook(model: nn.Module, config: PruneConfig, epochs: int,
                 filter_fn: FilterFn | None = None) -> PruneSchedule:
    """A :class:`~deepshrink.train.TrainHook` pruning the selected layers on ``config.schedule``
    over a training run of ``epochs`` epochs. All-ones masks are attached now, so the model's
    state has its final layout (which resuming from a checkpoint needs)."""
    config.check_epochs(epochs)
    names = selected_layers(model, config, filter_fn)
    attach_full_masks(model, names)
    return PruneSchedule(names, _method(config), config.amounts(epochs), recover=config.schedule == "linear")


def pruned_layers(model: nn.Module, names: list[str] | None = None) -> dict[str, float]:
    """Layer name -> fraction of its weights masked, for the masked layers (or ``names``)."""
    masks = masks_of(model)
    return {name: 1.0 - float(masks[name].sum()) / masks[name].numel() for name in (names or masks)}
