"""Structured (channel/filter) pruning with physical removal: the pruned model is an ordinary
dense model with smaller layers.

- :class:`DependencyGraph` (``graph.py``): coupled channel groups from a ``torch.fx`` trace;
- :class:`Group` (``group.py``): the (module, role, indices) slices that shrink together;
- :func:`channel_scores` (``importance.py``): L1, L2, FPGM, BatchNorm scale, random;
- ``strategy.py``: per-layer ratios, one global ranking, rounded channel counts;
- :func:`remove_channels` (``remove.py``): slicing the tensors;
- :func:`plan_channels`, :func:`prune_channels` (``pruner.py``): all of it, optionally to a target
  MAC reduction;
- :class:`GradualChannelPruning` (``gradual.py``): a training hook that prunes on a schedule by
  zeroing channels (:func:`zero_channels`), removed once training is over;
- :func:`pruned_spec` (``spec.py``): the architecture spec that rebuilds the pruned model.
"""

from deepshrink.prune.structured.gradual import GradualChannelPruning, zero_channels
from deepshrink.prune.structured.graph import DependencyGraph, trace
from deepshrink.prune.structured.group import Group
from deepshrink.prune.structured.importance import CRITERIA, channel_scores
from deepshrink.prune.structured.pruner import (ChannelPlan, StructuredResult, StructuredConfig, plan_channels,
                                                prune_channels)
from deepshrink.prune.structured.remove import remove_channels
from deepshrink.prune.structured.spec import pruned_spec
from deepshrink.prune.structured.strategy import VECTOR_CHANNELS, global_plan, kept_channels, layer_plan, unaligned_groups

__all__ = [
    "CRITERIA",
    "VECTOR_CHANNELS",
    "ChannelPlan",
    "DependencyGraph",
    "GradualChannelPruning",
    "Group",
    "StructuredResult",
    "StructuredConfig",
    "channel_scores",
    "global_plan",
    "kept_channels",
    "layer_plan",
    "plan_channels",
    "prune_channels",
    "pruned_spec",
    "remove_channels",
    "trace",
    "unaligned_groups",
    "zero_channels",
]
