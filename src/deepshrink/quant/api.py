"""The public verbs: ``quantize_(model, QuantConfig(...))`` attaches weight quantizers (and,
with ``activation_bits``, activation quantizers; see :mod:`deepshrink.quant.activation`) in
place (post-training quantization is this alone; QAT and codebook fine-tuning are ordinary
training with :class:`deepshrink.train.Trainer` afterwards), and ``finalize`` bakes them into
plain weights.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from torch import nn
from torch.nn.utils import parametrize

from deepshrink.errors import ConfigError, UserError, is_int
from deepshrink.models.attach import quantizer_of  # re-exported: the quantizer on a module's weight
from deepshrink.prune.select import FilterFn, prunable_layers
from deepshrink.quant.activation import attach_activation_quantizers
from deepshrink.quant.kmeans import INITS
from deepshrink.quant.linear import BITS
from deepshrink.quant.quantizers import KMEANS_BITS, KMeansQuantizer, LinearQuantizer

METHODS = ("linear", "kmeans")
ACTIVATION_OBSERVERS = ("minmax", "ema", "percentile")  # the observers whose range is calibrated


@dataclass(frozen=True)
class QuantConfig:
    """How to quantize the weights of a model's Conv2d and Linear layers.

    ``exclude`` holds fnmatch globs of layer names to keep float, besides the first conv and
    the last classifier unless ``exclude_first_last`` is False. ``symmetric`` and
    ``per_channel`` apply to the linear method, ``init`` and ``seed`` to k-means.

    ``activation_bits`` (2..8 or 16; None: weights only) also fake-quantizes the inputs of the
    same layers (asymmetric, range from the ``activation_observer`` after calibration) and the
    outputs of every ``nn.ReLU6`` (fixed range [0, 6]).
    """

    method: str = "linear"
    bits: int = 8
    symmetric: bool = False
    per_channel: bool = False
    init: str = "linear"
    exclude: tuple[str, ...] = ()
    exclude_first_last: bool = True
    seed: int = 0
    activation_bits: int | None = None
    activation_observer: str = "minmax"

    def __post_init__(self) -> None:
        object.__setattr__(self, "exclude", tuple(self.exclude))
        if self.method not in METHODS:
            self._fail("method", f"must be one of {', '.join(METHODS)}, got {self.method!r}")
        allowed = BITS if self.method == "linear" else KMEANS_BITS
        if self.bits not in allowed or isinstance(self.bits, bool):
            self._fail("bits", f"must be one of 2..8{' or 16' if 16 in allowed else ''} for {self.method} quantization, "
                               f"got {self.bits!r}")
        if self.method == "kmeans" and (self.symmetric or self.per_channel):
            self._fail("symmetric" if self.symmetric else "per_channel", "applies to linear quantization, not k-means")
        if self.init not in INITS:
            self._fail("init", f"must be one of {', '.join(INITS)}, got {self.init!r}")
        if self.activation_bits is not None and (self.activation_bits not in BITS or isinstance(self.activation_bits, bool)):
            self._fail("activation_bits", f"must be 2..8 or 16, got {self.activation_bits!r}")
        if self.activation_observer not in ACTIVATION_OBSERVERS:
            self._fail("activation_observer", f"must be one of {', '.join(ACTIVATION_OBSERVERS)}, "
                                              f"got {self.activation_observer!r}")
        if not (is_int(self.seed) and self.seed >= 0):
            self._fail("seed", f"must be an integer >= 0, got {self.seed!r}")

    def _fail(self, field: str, problem: str):
        raise ConfigError("QuantConfig", field, problem)

    def to_dict(self) -> dict[str, Any]:
        """The settings that apply to the method, as JSON data."""
        data = asdict(self)
        data["exclude"] = list(self.exclude)
        for key in (("init", "seed") if self.method == "linear" else ("symmetric", "per_channel")):
            del data[key]
        if self.activation_bits is None:
            del data["activation_observer"]
        return data


def quantize_(model: nn.Module, config: QuantConfig, filter_fn: FilterFn | None = None) -> nn.Module:
    """Attach a weight quantizer to each selected layer of ``model`` (in place; returns it):
    by default every Conv2d/Linear but the first conv and the classifier, or those
    ``filter_fn(module, fqn)`` accepts (:mod:`deepshrink.prune.select`), minus ``config.exclude``.

    A layer that already has a pruning mask keeps it: the quantizer chains after it, so its
    zeros stay exactly zero. For k-means the clustering runs now, on the current (masked)
    weights, and the float weight is frozen (``requires_grad`` False): only the centroids train.

    With ``config.activation_bits`` the layers' input quantizers (and ReLU6 output quantizers)
    are attached too; the input ones calibrate until
    :func:`deepshrink.quant.activation.calibrate_activations` freezes them.
    """
    layers = prunable_layers(model, config.exclude, exclude_first_last=config.exclude_first_last,
                             filter_fn=filter_fn, owner="QuantConfig")
    for name, module in layers.items():
        if quantizer_of(module) is not None:
            raise UserError(f"{name} is already quantized; quantize the unquantized model instead")
    if config.activation_bits is not None:
        attach_activation_quantizers(model, list(layers), config.activation_bits, config.activation_observer)
    for module in layers.values():
        if config.method == "linear":
            quantizer = LinearQuantizer(config.bits, config.symmetric, config.per_channel)
        else:
            quantizer = KMeansQuantizer.fit(module.weight, config.bits, config.init, config.seed)
        parametrize.register_parametrization(module, "weight", quantizer, unsafe=True)
        if config.method == "kmeans":
            module.parametrizations.weight.original.requires_grad_(False)
    return model


def quantizers_of(model: nn.Module) -> dict[str, nn.Module]:
    """Qualified layer name -> quantizer (:func:`quantizer_of`), for every quantized weight of ``model``."""
    found = {name: quantizer_of(module) for name, module in model.named_modules()}
    return {name: quantizer for name, quantizer in found.items() if quantizer is not None}


def finalize(model: nn.Module) -> nn.Module:
    """Bake every quantized weight into a plain, trainable parameter holding the quantized
    values (the whole parametrization chain of that weight, a pruning mask included, is
    removed; pruned positions stay 0.0). In place; returns ``model``."""
    for name in quantizers_of(model):
        module = model.get_submodule(name)
        parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
        module.weight.requires_grad_(True)
    return model
