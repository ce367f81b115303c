"""Per-layer sensitivity to quantization: a measured score drop, or a Hessian-trace estimate."""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize

from deepshrink.errors import UserError
from deepshrink.models.attach import copy_model
from deepshrink.progress import steps
from deepshrink.quant.api import QuantConfig
from deepshrink.quant.mixed.apply import attach_at_bits, unquantized_layers, weight_quantizer

Evaluate = Callable[[nn.Module], float]          # model -> score, higher is better
Sensitivity = dict[str, dict[int, float]]       # layer -> bits -> score drop (or Ω)


def layer_sensitivity(model: nn.Module, layers: Sequence[str], bits_options: Sequence[int],
                      evaluate: Evaluate, config: QuantConfig) -> Sensitivity:
    """``result[layer][bits] = evaluate(model) - evaluate(model with only layer quantized at
    bits)``: the drop of the score, in the score's units (a top-1 fraction, or the increase of
    the mean loss in nats when ``evaluate`` returns minus the loss). Each quantized variant is
    a :func:`~deepshrink.models.attach.copy_model` copy; ``model`` is left unchanged. Progress:
    one step per layer (:func:`deepshrink.progress.steps`)."""
    modules = unquantized_layers(model, layers)
    baseline = evaluate(model)
    result: Sensitivity = {}
    for name in steps(modules, "quantization sensitivity", len(modules), unit="layers"):
        result[name] = {}
        for bits in bits_options:
            variant = copy_model(model)
            attach_at_bits(variant.get_submodule(name), bits, config)
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
    for inputs, targets in steps(batches, "Hessian traces", unit="batches"):
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
    modules = unquantized_layers(model, layers)
    batches = list(batches)
    traces = hessian_traces(model, list(modules), batches, probes=probes, seed=seed, per_layer=per_layer,
                            loss_fn=loss_fn)
    return {name: {bits: traces[name] / module.weight.numel() * quantization_error(module, bits, config)
                   for bits in bits_options}
            for name, module in modules.items()}
