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

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize

from deepshrink.data import BatchLoader, ImageDataset
from deepshrink.errors import UserError
from deepshrink.models.attach import copy_model
from deepshrink.models.file import ModelInfo
from deepshrink.prune.select import PRUNABLE, prunable_layers
from deepshrink.quant.api import QuantConfig, quantizer_of
from deepshrink.quant.quantizers import KMeansQuantizer, LinearQuantizer
from deepshrink.train import evaluate, resolve_device

DEFAULT_BITS = (2, 3, 4, 5, 6, 8)
CRITERIA = ("loss", "accuracy", "hessian")
FLOAT_BYTES = 4  # float32 element, and one stored scale, zero-point or centroid

Evaluate = Callable[[nn.Module], float]          # model -> score, higher is better
Sensitivity = dict[str, dict[int, float]]       # layer -> bits -> score drop (or Ω)
Sizes = dict[str, dict[int, int]]               # layer -> bits -> bytes of that layer's weight


# ---------------------------------------------------------------------------------------------
# Attaching per-layer quantizers

def mixed_layers(model: nn.Module, config: QuantConfig) -> dict[str, nn.Module]:
    """The layers whose bits are chosen: ``config``'s selection (Conv2d/Linear minus
    ``exclude``, and minus the first conv and the classifier unless ``exclude_first_last`` is
    False), in module order. ``config.bits`` is not used."""
    return prunable_layers(model, config.exclude, exclude_first_last=config.exclude_first_last)


def config_at(config: QuantConfig, bits: int) -> QuantConfig:
    """``config`` with ``bits`` (validated: a :class:`UserError` if the method does not take it)."""
    return dataclasses.replace(config, bits=bits)


def weight_quantizer(weight: Tensor, bits: int, config: QuantConfig) -> nn.Module:
    """A weight quantizer for ``weight`` (the tensor it will receive, masked if pruned) at
    ``bits``, with ``config``'s method and options; k-means clusters ``weight`` now."""
    config = config_at(config, bits)
    if config.method == "linear":
        return LinearQuantizer(bits, config.symmetric, config.per_channel)
    return KMeansQuantizer.fit(weight, bits, config.init, config.seed)


def _attach(module: nn.Module, bits: int, config: QuantConfig) -> None:
    quantizer = weight_quantizer(module.weight, bits, config)
    parametrize.register_parametrization(module, "weight", quantizer, unsafe=True)
    if config.method == "kmeans":  # as quantize_: only the centroids train
        module.parametrizations.weight.original.requires_grad_(False)


def _checked_layers(model: nn.Module, names: Iterable[str]) -> dict[str, nn.Module]:
    """name -> module for Conv2d/Linear layers of ``model`` that are not quantized yet."""
    modules = dict(model.named_modules())
    found = {}
    for name in names:
        module = modules.get(name)
        if not isinstance(module, PRUNABLE):
            raise UserError(f"{name!r} is not a Conv2d/Linear layer of the model")
        if quantizer_of(module) is not None:
            raise UserError(f"{name} is already quantized; quantize the unquantized model instead")
        found[name] = module
    return found


def quantize_mixed_(model: nn.Module, assignment: Mapping[str, int], config: QuantConfig) -> nn.Module:
    """Attach to each layer of ``assignment`` (name -> bits) a weight quantizer at its bits,
    with ``config``'s method and options (``config.bits`` and its layer selection are not
    used). In place; returns ``model``. As :func:`deepshrink.quant.quantize_`: a pruning mask
    stays first in the chain, and k-means freezes the float weight."""
    layers = _checked_layers(model, assignment)
    for name, module in layers.items():
        _attach(module, int(assignment[name]), config)
    return model


# ---------------------------------------------------------------------------------------------
# Sensitivity

def layer_sensitivity(model: nn.Module, layers: Sequence[str], bits_options: Sequence[int],
                      evaluate: Evaluate, config: QuantConfig) -> Sensitivity:
    """``result[layer][bits] = evaluate(model) - evaluate(model with only layer quantized at
    bits)``: the drop of the score, in the score's units (a top-1 fraction, or the increase of
    the mean loss in nats when ``evaluate`` returns minus the loss). Each quantized variant is
    a :func:`~deepshrink.models.attach.copy_model` copy; ``model`` is left unchanged."""
    modules = _checked_layers(model, layers)
    baseline = evaluate(model)
    result: Sensitivity = {}
    for name in modules:
        result[name] = {}
        for bits in bits_options:
            variant = copy_model(model)
            _attach(variant.get_submodule(name), bits, config)
            result[name][bits] = baseline - evaluate(variant)
    return result


def _trainable_weight(module: nn.Module) -> Tensor:
    """The leaf tensor behind ``module.weight`` (under a mask, the unmasked original)."""
    if parametrize.is_parametrized(module, "weight"):
        return module.parametrizations.weight.original
    return module.weight


def hessian_traces(model: nn.Module, layers: Sequence[str],
                   batches: Iterable[tuple[Tensor, Tensor]], *, probes: int = 4, seed: int = 0,
                   per_layer: bool = True,
                   loss_fn: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy) -> dict[str, float]:
    """Hutchinson estimates of tr(H_ll) per layer l, H_ll the Hessian of the mean ``loss_fn``
    over ``batches`` (eval mode) with respect to that layer's weight: the mean of v·(H_ll v)
    over ``probes`` Rademacher (±1) vectors v. Batches are weighted by their size; ``model``
    is unchanged.

    ``per_layer``: one Hessian-vector product per layer and probe. Otherwise one product per
    probe serves all layers (v spans every layer's weight; E[v_l·(Hv)_l] = tr(H_ll) as the
    cross terms v_l·H_lm v_m average to zero): cheaper, but on ResNet-20 those cross terms
    made the spread of one probe's estimate about 4x larger, often giving negative traces.
    """
    work = copy_model(model).eval()
    for p in work.parameters():
        p.requires_grad_(False)
    weights = [_trainable_weight(work.get_submodule(name)) for name in layers]
    for w in weights:
        w.requires_grad_(True)
    generator = torch.Generator().manual_seed(seed)
    totals, seen = [0.0] * len(weights), 0
    for inputs, targets in batches:
        loss = loss_fn(work(inputs), targets)
        grads = torch.autograd.grad(loss, weights, create_graph=True)
        for _ in range(probes):
            vs = [(torch.randint(0, 2, w.shape, generator=generator) * 2 - 1).to(w) for w in weights]
            if per_layer:
                hvs = [torch.autograd.grad(g, w, grad_outputs=v, retain_graph=True)[0]
                       for g, w, v in zip(grads, weights, vs)]
            else:
                hvs = torch.autograd.grad(grads, weights, grad_outputs=vs, retain_graph=True)
            for i, (v, hv) in enumerate(zip(vs, hvs)):
                totals[i] += float((v * hv).sum()) * len(targets) / probes
        seen += len(targets)
    if seen == 0:
        raise UserError("the Hessian estimate needs at least one calibration example")
    return {name: total / seen for name, total in zip(layers, totals)}


def quantization_error(module: nn.Module, bits: int, config: QuantConfig) -> float:
    """||W − Q(W)||² of the layer's (masked) weight W at ``bits`` (squared weight units)."""
    with torch.no_grad():
        weight = module.weight.detach()
        return float(((weight - weight_quantizer(weight, bits, config)(weight)) ** 2).sum())


def hessian_sensitivity(model: nn.Module, layers: Sequence[str], bits_options: Sequence[int],
                        config: QuantConfig, batches: Iterable[tuple[Tensor, Tensor]], *,
                        probes: int = 4, seed: int = 0, per_layer: bool = True,
                        loss_fn: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy) -> Sensitivity:
    """``result[layer][bits]`` = Ω = tr(H)/n · ||W − Q(W)||² (n = numel of W), with tr(H)
    from :func:`hessian_traces`: twice the second-order estimate ½ ΔᵀHΔ of the loss increase
    (nats) from quantizing that layer, if the error Δ = Q(W) − W were isotropic. Per batch
    one forward, one backward and ``probes`` (times the layers, ``per_layer``) Hessian-vector
    products; no accuracy evaluation, and the cost does not grow with ``bits_options``."""
    modules = _checked_layers(model, layers)
    batches = list(batches)
    traces = hessian_traces(model, list(modules), batches, probes=probes, seed=seed, per_layer=per_layer,
                            loss_fn=loss_fn)
    return {name: {bits: traces[name] / module.weight.numel() * quantization_error(module, bits, config)
                   for bits in bits_options}
            for name, module in modules.items()}


# ---------------------------------------------------------------------------------------------
# Size model

def weight_bytes(numel: int, bits: int) -> int:
    """Bytes of ``numel`` indices of ``bits`` bits each, bit-packed: ceil(numel * bits / 8)."""
    return math.ceil(numel * bits / 8)


def quantizer_parameter_bytes(weight_shape: Sequence[int], bits: int, config: QuantConfig) -> int:
    """Bytes of a quantized weight's parameters: per group (output channel when per-channel,
    else the tensor) a float32 scale and, when asymmetric, a float32 zero-point (linear); or
    the 2^bits float32 centroids (k-means)."""
    if config.method == "kmeans":
        return 2 ** bits * FLOAT_BYTES
    groups = weight_shape[0] if config.per_channel else 1
    return groups * FLOAT_BYTES * (1 if config.symmetric else 2)


def quantized_weight_bytes(weight_shape: Sequence[int], bits: int, config: QuantConfig) -> int:
    """Bytes of a weight of ``weight_shape`` quantized at ``bits``: indices plus parameters."""
    return weight_bytes(math.prod(weight_shape), bits) + quantizer_parameter_bytes(weight_shape, bits, config)


def layer_size_options(model: nn.Module, layers: Sequence[str], bits_options: Sequence[int],
                       config: QuantConfig) -> Sizes:
    """``result[layer][bits]``: bytes of that layer's weight quantized at ``bits`` (its bias
    and everything else is counted by :func:`model_size_bytes`)."""
    return {name: {bits: quantized_weight_bytes(model.get_submodule(name).weight.shape, bits, config)
                   for bits in bits_options}
            for name in layers}


def _stored_tensors(model: nn.Module) -> Iterable[tuple[str, str, Tensor]]:
    """(module name, tensor name, tensor) of every parameter (a parametrized one by its
    original) and persistent floating-point buffer of the model's own modules (not of the
    parametrizations: masks, k-means indices)."""
    for module_name, module in model.named_modules():
        if "parametrizations" in module_name.split("."):
            continue
        tensors = dict(module.named_parameters(recurse=False))
        if parametrize.is_parametrized(module):  # the original has the shape the forward sees
            tensors.update({name: chain.original for name, chain in module.parametrizations.items()})
        for name, buffer in module.named_buffers(recurse=False):
            if buffer.is_floating_point() and name not in module._non_persistent_buffers_set:
                tensors[name] = buffer
        for name, tensor in tensors.items():
            yield module_name, name, tensor


def float_bytes_besides(model: nn.Module, layers: Iterable[str]) -> int:
    """Bytes of everything in ``model`` but the weights of ``layers``, all float32: the part of
    the size that no choice of bits changes."""
    chosen = set(layers)
    return sum(tensor.numel() * FLOAT_BYTES for module_name, name, tensor in _stored_tensors(model)
               if not (name == "weight" and module_name in chosen))


def model_size_bytes(model: nn.Module, assignment: Mapping[str, int], config: QuantConfig) -> int:
    """Bytes of ``model`` stored with each layer of ``assignment`` (name -> bits) quantized at
    its bits and every other tensor as float32, by the size model of this module (quantizers
    already attached to ``model`` are not consulted: ``{}`` gives the float size)."""
    unknown = set(assignment) - {name for name, m in model.named_modules() if isinstance(m, PRUNABLE)}
    if unknown:
        raise UserError(f"not Conv2d/Linear layers of the model: {', '.join(sorted(unknown))}")
    total = 0
    for module_name, name, tensor in _stored_tensors(model):
        if name == "weight" and module_name in assignment:
            total += quantized_weight_bytes(tensor.shape, int(assignment[module_name]), config)
        else:
            total += tensor.numel() * FLOAT_BYTES
    return total


# ---------------------------------------------------------------------------------------------
# Assignment: multiple-choice knapsack

def assign_bits(sensitivity: Mapping[str, Mapping[int, float]], sizes: Mapping[str, Mapping[int, int]],
                budget_bytes: int, *, granularity: int = 64) -> dict[str, int]:
    """One bit-width per layer minimising the summed ``sensitivity`` subject to the summed
    ``sizes`` (bytes) being at most ``budget_bytes``; ties go to the smaller size.

    Dynamic programme over sizes: each layer's smallest choice is always paid, and what a
    larger choice adds is rounded *up* to a multiple of ``granularity`` bytes (the spare
    budget down), so the result always fits the budget, it exists whenever the smallest
    choices fit, and it is exactly optimal for ``granularity=1``; otherwise it is at least as
    good as the exact optimum for a budget ``len(layers) * granularity`` bytes smaller.
    Time and memory O(layers × options × spare budget / granularity).
    A :class:`UserError` when even every layer's smallest choice exceeds the budget.
    """
    layers = list(sensitivity)
    if set(layers) != set(sizes) or any(set(sensitivity[n]) != set(sizes[n]) or not sizes[n] for n in layers):
        raise ValueError("sensitivity and sizes must hold the same layers and bit-widths")
    if granularity < 1:
        raise ValueError(f"granularity must be >= 1 byte, got {granularity}")
    smallest = sum(min(sizes[n].values()) for n in layers)
    if smallest > budget_bytes:
        raise UserError(f"a budget of {budget_bytes} bytes is below the smallest mixed-precision size, "
                        f"{smallest} bytes (every layer at its smallest choice)")
    capacity = int((budget_bytes - smallest) // granularity)
    best = np.zeros(capacity + 1)  # best[u]: least cost of the layers so far within u units
    choices, extras = [], []
    for name in layers:
        options = sorted(sizes[name], key=lambda b: (sizes[name][b], b))
        base = sizes[name][options[0]]
        units = [-(-(sizes[name][b] - base) // granularity) for b in options]
        candidates = np.full((len(options), capacity + 1), np.inf)
        for row, (bits, extra) in enumerate(zip(options, units)):
            if extra <= capacity:
                candidates[row, extra:] = best[:capacity + 1 - extra] + float(sensitivity[name][bits])
        picked = candidates.argmin(axis=0)  # first minimum: the smaller size on ties
        best = candidates[picked, np.arange(capacity + 1)]
        choices.append((options, picked))
        extras.append(units)
    assignment, spare = {}, capacity
    for name, (options, picked), units in zip(reversed(layers), reversed(choices), reversed(extras)):
        row = int(picked[spare])
        assignment[name] = options[row]
        spare -= units[row]
    return {name: assignment[name] for name in layers}


# ---------------------------------------------------------------------------------------------
# The whole plan, for the quantize job and the CLI

def mixed_precision_record(config: QuantConfig, assignment: Mapping[str, int], budget_bytes: int,
                           size_bytes: int, float_size_bytes: int, **details: Any) -> dict[str, Any]:
    """The model-history entry (JSON data) of a mixed-precision quantization: the method and
    options, the bits per layer, the budget and achieved size (bytes, by this module's size
    model) and the float32 size, plus ``details`` (e.g. the criterion)."""
    settings = {k: v for k, v in config.to_dict().items() if k != "bits"}
    return {"stage": "quantize", "mixed_precision": True, **settings, **details,
            "budget_bytes": int(budget_bytes), "size_bytes": int(size_bytes),
            "float_size_bytes": int(float_size_bytes),
            "assignment": {name: int(bits) for name, bits in assignment.items()}}


def plan_mixed_precision(model: nn.Module, info: ModelInfo, config: QuantConfig, budget_bytes: int,
                         calibration_set: ImageDataset, *, bits_options: Sequence[int] = DEFAULT_BITS,
                         criterion: str = "loss", device: str = "auto", batch_size: int = 500,
                         granularity: int = 64, probes: int = 4) -> tuple[dict[str, int], dict[str, Any]]:
    """Choose per-layer bits (from ``bits_options``) for ``config``'s layers of ``model`` so
    that the whole model, by this module's size model, fits ``budget_bytes``; returns
    ``(assignment, record)``. ``model`` is only moved to ``device``; apply the assignment
    with :func:`quantize_mixed_` and append ``record`` to ``info.history``.

    ``calibration_set`` (a held-out subset, e.g. 1000 training images, normalised as ``info``
    says) measures the sensitivity by ``criterion``: ``loss`` (increase of the mean
    cross-entropy), ``accuracy`` (drop of top-1) or ``hessian`` (Ω of
    :func:`hessian_sensitivity`, ``probes`` Rademacher probes). A too small budget is a
    :class:`UserError` before any evaluation.
    """
    if criterion not in CRITERIA:
        raise UserError(f"unknown sensitivity criterion {criterion!r}; choose one of: {', '.join(CRITERIA)}")
    if not bits_options:
        raise UserError("give at least one bit-width to choose from")
    for bits in bits_options:
        config_at(config, bits)
    layers = list(mixed_layers(model, config))
    if not layers:
        raise UserError("no Conv2d/Linear layer left to quantize after the exclusions")
    if len(calibration_set) == 0:
        raise UserError("the calibration set is empty")
    sizes = layer_size_options(model, layers, bits_options, config)
    fixed = float_bytes_besides(model, layers)
    smallest = fixed + sum(min(s.values()) for s in sizes.values())
    if budget_bytes < smallest:
        raise UserError(f"a budget of {budget_bytes / 1024:.1f} KiB is below the smallest size of this model "
                        f"with its quantized layers at {min(bits_options)} bits and the rest float32: "
                        f"{smallest / 1024:.1f} KiB")
    target = resolve_device(device)
    model.to(target)

    def batches() -> BatchLoader:
        return BatchLoader(calibration_set, batch_size, mean=info.input.mean, std=info.input.std, device=target)

    def score(candidate: nn.Module) -> float:
        with parametrize.cached():
            result = evaluate(candidate, batches(), target)
        return result.top1 if criterion == "accuracy" else -result.loss

    if criterion == "hessian":
        sensitivity = hessian_sensitivity(model, layers, bits_options, config, batches(), probes=probes)
    else:
        sensitivity = layer_sensitivity(model, layers, bits_options, score, config)
    assignment = assign_bits(sensitivity, sizes, budget_bytes - fixed, granularity=granularity)
    size = model_size_bytes(model, assignment, config)
    record = mixed_precision_record(config, assignment, budget_bytes, size, model_size_bytes(model, {}, config),
                                    bits_options=list(bits_options), criterion=criterion,
                                    calibration_images=len(calibration_set))
    return assignment, record
