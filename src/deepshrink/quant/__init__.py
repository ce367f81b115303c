"""Weight quantization: linear fixed-point with a straight-through estimator (PTQ and QAT) and
k-means weight sharing with codebook fine-tuning.

    from deepshrink.quant import QuantConfig, quantize_
    quantize_(model, QuantConfig(method="kmeans", bits=4))   # PTQ; train afterwards for QAT

Importing this package registers the ``linear-quant`` and ``kmeans`` parametrizations, so model
files holding quantizers load.
"""

from deepshrink.quant.api import METHODS, QuantConfig, finalize, quantize_, quantizer_of, quantizers_of
from deepshrink.quant.kmeans import INITS, Clustering, kmeans_1d, wcss
from deepshrink.quant.linear import BITS, fake_quantize, level_range, quant_params
from deepshrink.quant.quantizers import PRUNED, KMeansQuantizer, LinearQuantizer

__all__ = [
    "BITS",
    "INITS",
    "METHODS",
    "PRUNED",
    "Clustering",
    "KMeansQuantizer",
    "LinearQuantizer",
    "QuantConfig",
    "fake_quantize",
    "finalize",
    "kmeans_1d",
    "level_range",
    "quant_params",
    "quantize_",
    "quantizer_of",
    "quantizers_of",
    "wcss",
]
