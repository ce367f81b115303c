"""Fine-grained (unstructured) pruning: masks, criteria, layer selection, schedules,
sparsity regularisers and sensitivity analysis.

Importing this package registers the ``mask`` parametrization, so model files holding masks load.
"""

from deepshrink.prune.apply import attach_full_masks, prune_layers
from deepshrink.prune.criteria import (CRITERIA, SCOPES, global_magnitude_masks, magnitude_mask,
                                       mask_method, random_mask, std_mask)
from deepshrink.prune.mask import (WeightMask, attach_masks, finalize, masks_of, underlying_weight,
                                   weight_mask, zero_pruned_weights)
from deepshrink.prune.select import prunable_layers

__all__ = [
    "CRITERIA",
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
