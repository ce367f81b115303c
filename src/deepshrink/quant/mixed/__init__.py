"""Mixed precision: choosing a bit-width per layer so that the model fits a size budget.

    assignment, record = plan_mixed_precision(model, info, QuantConfig("linear", per_channel=True),
                                              budget_bytes=60_000, calibration_set=train_subset)
    quantize_mixed_(model, assignment, QuantConfig("linear", per_channel=True))
    info.history.append(record)

Three steps, each usable alone:

1. **Sensitivity** of each layer at each bit-width, the other layers left float:
   :func:`layer_sensitivity` measures the drop of a score (``evaluate(model)``, higher is
   better: top-1, or minus the mean loss) with only that layer quantized;
   :func:`hessian_sensitivity` estimates it without evaluating accuracy, as
   Ω = tr(H) / n · ||W − Q(W)||² (H the Hessian of the loss with respect to the layer's n
   weights, its trace by Hutchinson's estimator with Rademacher probes).
2. **Sizes** by the size model below (:func:`layer_size_options`, :func:`model_size_bytes`).
3. **Assignment** (:func:`assign_bits`): the per-layer bits minimising the summed sensitivity
   with the summed size within the budget (treating the layers' sensitivities as additive),
   an exact multiple-choice knapsack (dynamic programme over sizes counted in units of
   ``granularity`` bytes).

Size model (bytes; a model stored without any entropy coding):

- a quantized weight: ``ceil(numel * bits / 8)`` for the indices, counting *all* elements
  (pruned zeros too: their positions are not stored separately), plus its parameters: linear
  quantization 4 bytes per scale and 4 per zero-point (symmetric quantization stores no
  zero-point), one of each per output channel when per-channel, else one per tensor; k-means
  a codebook of ``2^bits`` float32 centroids;
- every other tensor (biases, BatchNorm weights and running statistics, float layers): 4 bytes
  per element. Integer buffers (BatchNorm's batch counter) and the masks' and quantizers' own
  tensors are not counted.
"""

from deepshrink.quant.mixed.apply import config_at, mixed_layers, quantize_mixed_, weight_quantizer
from deepshrink.quant.mixed.knapsack import assign_bits
from deepshrink.quant.mixed.plan import CRITERIA, DEFAULT_BITS, mixed_precision_record, plan_mixed_precision
from deepshrink.quant.mixed.sensitivity import (Evaluate, Sensitivity, hessian_sensitivity, hessian_traces,
                                                layer_sensitivity, quantization_error)
from deepshrink.quant.mixed.size import (FLOAT_BYTES, Sizes, float_bytes_besides, layer_size_options,
                                         model_size_bytes, quantized_weight_bytes, quantizer_parameter_bytes,
                                         weight_bytes)

__all__ = [
    "CRITERIA", "DEFAULT_BITS", "FLOAT_BYTES", "Evaluate", "Sensitivity", "Sizes", "assign_bits", "config_at",
    "float_bytes_besides", "hessian_sensitivity", "hessian_traces", "layer_sensitivity", "layer_size_options",
    "mixed_layers", "mixed_precision_record", "model_size_bytes", "plan_mixed_precision", "quantization_error",
    "quantize_mixed_", "quantized_weight_bytes", "quantizer_parameter_bytes", "weight_bytes", "weight_quantizer",
]
