"""Fine-grained (unstructured) pruning: the ``prune_`` verb and its ``PruneConfig``, masks,
criteria, layer selection, schedules, sparsity regularisers and sensitivity analysis.

Importing this package registers the ``mask`` parametrization, so model files holding masks load.
"""

from deepshrink.prune.api import prune_, pruned_layers, pruning_hook, selected_layers
from deepshrink.prune.apply import attach_full_masks, prune_layers
from deepshrink.prune.config import PruneConfig
from deepshrink.prune.criteria import (CRITERIA, SCOPES, global_magnitude_masks, magnitude_mask,
                                       mask_method, random_mask, std_mask)
from deepshrink.prune.mask import (WeightMask, attach_masks, finalize, masks_of, underlying_weight,
                                   weight_mask, zero_pruned_weights)
from deepshrink.prune.select import FilterFn, prunable_layers

__all__ = [
    "CRITERIA",
    "FilterFn",
    "PruneConfig",
    "prune_",
    "pruned_layers",
    "pruning_hook",
    "selected_layers",
    "SCOPES",
    "WeightMask",
    "attach_full_masks",
    "attach_masks",
    "finalize",
    "global_magnitude_masks",
    "magnitude_mask",
    "mask_method",
    "masks_of",
    "prunable_layers",
    "prune_layers",
    "random_mask",
    "std_mask",
    "underlying_weight",
    "weight_mask",
    "zero_pruned_weights",
]
