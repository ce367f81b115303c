"""Weight quantization: linear fixed-point with a straight-through estimator (PTQ and QAT) and
k-means weight sharing with codebook fine-tuning; fake quantization of activations with range
observers and calibration.

    from deepshrink.quant import QuantConfig, calibrate_activations, quantize_
    quantize_(model, QuantConfig(method="kmeans", bits=4))   # PTQ; train afterwards for QAT
    quantize_(other, QuantConfig(bits=8, activation_bits=8))
    calibrate_activations(other, batches)                    # then evaluate, or train (QAT)

Importing this package registers the ``linear-quant`` and ``kmeans`` parametrizations, so model
files holding quantizers load.
"""

from deepshrink.quant.activation import (ActivationQuantizer, activation_quantizers_of,
                                         attach_activation_quantizers, calibrate_activations,
                                         describe_activation_quantizers, remove_activation_quantizers,
                                         restore_activation_quantizers)
from deepshrink.quant.api import (ACTIVATION_OBSERVERS, METHODS, QuantConfig, finalize, quantize_, quantizer_of,
                                  quantizers_of)
from deepshrink.quant.kmeans import INITS, Clustering, kmeans_1d, wcss
from deepshrink.quant.linear import BITS, fake_quantize, level_range, quant_params
from deepshrink.quant.observers import (OBSERVERS, FixedRangeObserver, MinMaxObserver, MovingAverageObserver,
                                        PercentileObserver, RangeObserver, make_observer)
from deepshrink.quant.quantizers import PRUNED, KMeansQuantizer, LinearQuantizer

__all__ = [
    "ACTIVATION_OBSERVERS",
    "BITS",
    "INITS",
    "METHODS",
    "OBSERVERS",
    "PRUNED",
    "ActivationQuantizer",
    "Clustering",
    "FixedRangeObserver",
    "KMeansQuantizer",
    "LinearQuantizer",
    "MinMaxObserver",
    "MovingAverageObserver",
    "PercentileObserver",
    "QuantConfig",
    "RangeObserver",
    "activation_quantizers_of",
    "attach_activation_quantizers",
    "calibrate_activations",
    "describe_activation_quantizers",
    "fake_quantize",
    "finalize",
    "kmeans_1d",
    "level_range",
    "make_observer",
    "quant_params",
    "quantize_",
    "quantizer_of",
    "quantizers_of",
    "remove_activation_quantizers",
    "restore_activation_quantizers",
    "wcss",
]
