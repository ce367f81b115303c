"""Fake quantization of activations: an :class:`ActivationQuantizer` per quantized tensor, fed by
a range observer (:mod:`deepshrink.quant.observers`), attached to layers through forward hooks.

Where they sit:

- a layer's **input**: submodule ``input_quantizer`` plus a forward pre-hook
  (:func:`quantize_input_hook`) that replaces the layer's first positional argument;
- an ``nn.ReLU6``'s **output**: submodule ``output_quantizer`` plus a forward hook
  (:func:`quantize_output_hook`), with the fixed range [0, 6] (8-bit scale exactly 6/255).

The hooks are module-level functions, so ``copy.deepcopy`` / ``copy_model`` keep them, and they
read the quantizer from the module they run on. The quantizer is the hooked-submodule kind
``activation-quantizer`` of :mod:`deepshrink.models.attach`, which attaches, finds, removes and
(in model files) records and restores it. Levels, scale and zero point follow
:mod:`deepshrink.quant.linear` (the range always contains 0; asymmetric levels 0..2^b-1).

Life cycle (as torch.ao's observer + FakeQuantize): attached quantizers *calibrate* (observe,
pass x through unchanged) until :meth:`ActivationQuantizer.freeze` computes scale and zero
point; from then on they fake-quantize. In training mode (QAT) a frozen quantizer keeps
observing and recomputes its scale and zero point every batch (with the ``ema`` observer the
range follows the training activations); in eval mode it uses the stored ones.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from deepshrink.errors import UserError
from deepshrink.models.attach import (HookedRole, attach_hooked, describe_hooked_submodules,
                                      detach_hooked_submodules, model_device,
                                      register_hooked_submodule, restore_hooked_submodules)
from deepshrink.models.file import ACTIVATION_QUANTIZER
from deepshrink.quant.linear import BITS, fake_quantize, level_range, quant_params
from deepshrink.quant.observers import FixedRangeObserver, RangeObserver, make_observer

KIND = ACTIVATION_QUANTIZER  # its hooked-submodule kind, kept in model files' "activation_quantizers"
INPUT, OUTPUT = "input", "output"
ATTRIBUTE = {INPUT: "input_quantizer", OUTPUT: "output_quantizer"}
RELU6_RANGE = (0.0, 6.0)


def quantize_input_hook(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """Forward pre-hook: the layer's first input through ``module.input_quantizer``."""
    return (module.input_quantizer(args[0]), *args[1:])


def quantize_output_hook(module: nn.Module, args: tuple[Any, ...], output: Tensor) -> Tensor:
    """Forward hook: the module's output through ``module.output_quantizer``."""
    return module.output_quantizer(output)


@register_hooked_submodule(KIND)
class ActivationQuantizer(nn.Module):
    """Fake-quantizes a tensor to ``bits``-bit levels over the range its ``observer`` reports.

    Buffers ``scale`` and ``zero_point`` (float32 scalars) hold the frozen parameters; ``frozen``
    (a plain attribute, recorded in :meth:`spec`) says whether the quantizer calibrates or
    quantizes. The gradient passes straight through (see :func:`fake_quantize`).
    """

    roles = {INPUT: HookedRole(ATTRIBUTE[INPUT], quantize_input_hook, pre=True),
             OUTPUT: HookedRole(ATTRIBUTE[OUTPUT], quantize_output_hook, pre=False)}

    def __init__(self, bits: int, symmetric: bool = False, observer: RangeObserver | str = "minmax",
                 frozen: bool = False):
        super().__init__()
        if bits not in BITS:
            raise UserError(f"activation quantization takes bits in 2..8 or 16, got {bits}")
        self.bits, self.symmetric = bits, bool(symmetric)
        self.qmin, self.qmax = level_range(bits, self.symmetric)
        self.observer = make_observer(observer) if isinstance(observer, str) else observer
        self.register_buffer("scale", torch.tensor(1.0))
        self.register_buffer("zero_point", torch.tensor(0.0))
        self.frozen = bool(frozen)

    def forward(self, x: Tensor) -> Tensor:
        if not self.frozen:
            self.observer.observe(x)
            return x
        if self.training:
            self.observer.observe(x)
            self._set_params()
        # levels are computed in float32 (a float16 x would round levels above 2048)
        return fake_quantize(x.float(), self.scale, self.zero_point, self.qmin, self.qmax).to(x.dtype)

    def freeze(self) -> None:
        """Fix scale and zero point from the observed range and start fake-quantizing."""
        if not self.observer.has_observed:
            raise RuntimeError("this activation quantizer has observed nothing: calibrate it first")
        self._set_params()
        self.frozen = True

    def calibrate(self) -> None:
        """Back to calibration: forget the observed range, pass inputs through unchanged."""
        self.observer.reset()
        self.frozen = False

    @torch.no_grad()
    def _set_params(self) -> None:
        lo, hi = self.observer.range()
        scale, zero_point = quant_params(torch.stack([lo, hi]), self.bits, self.symmetric)
        self.scale.copy_(scale)
        self.zero_point.copy_(zero_point)

    def spec(self) -> dict[str, Any]:
        """JSON-valued constructor arguments (the buffers travel in the state dict)."""
        return {"bits": self.bits, "symmetric": self.symmetric, "observer": self.observer.name,
                "observer_args": self.observer.spec(), "frozen": self.frozen}

    @classmethod
    def from_spec(cls, args: Mapping[str, Any]) -> "ActivationQuantizer":
        try:
            observer = make_observer(args["observer"], **dict(args.get("observer_args") or {}))
            return cls(int(args["bits"]), bool(args.get("symmetric", False)), observer,
                       bool(args.get("frozen", False)))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise UserError(f"malformed activation quantizer record {dict(args)!r} ({exc})") from None

    def extra_repr(self) -> str:
        return f"bits={self.bits}, symmetric={self.symmetric}, frozen={self.frozen}"


def attach_activation_quantizers(model: nn.Module, layer_names: Iterable[str], bits: int,
                                 observer: str = "minmax", symmetric: bool = False, *,
                                 observer_args: Mapping[str, Any] | None = None,
                                 relu6_outputs: bool = True) -> dict[str, ActivationQuantizer]:
    """Attach an input quantizer (observer ``observer`` built with ``observer_args``) to each
    named layer and, with ``relu6_outputs``, an output quantizer with the fixed range [0, 6]
    (asymmetric, already frozen: its range needs no calibration) to every ``nn.ReLU6`` that has
    none. In place; returns qualified quantizer name -> quantizer for what was attached.

    The input quantizers calibrate until :func:`calibrate_activations` (or ``freeze()``).
    """
    layers = {}
    for name in layer_names:
        try:
            layers[name] = model.get_submodule(name)
        except AttributeError:
            raise UserError(f"the model has no layer {name!r}") from None
        if hasattr(layers[name], ATTRIBUTE[INPUT]):
            raise UserError(f"{name} already quantizes its input; quantize the unquantized model instead")
    device = model_device(model)
    attached = {}
    for name, module in layers.items():
        quantizer = ActivationQuantizer(bits, symmetric, make_observer(observer, **dict(observer_args or {})))
        attach_hooked(module, INPUT, quantizer.to(device))
        attached[_join(name, ATTRIBUTE[INPUT])] = quantizer
    if relu6_outputs:
        for name, module in list(model.named_modules()):
            if isinstance(module, nn.ReLU6) and not hasattr(module, ATTRIBUTE[OUTPUT]):
                quantizer = ActivationQuantizer(bits, False, FixedRangeObserver(*RELU6_RANGE)).to(device)
                quantizer.freeze()
                attach_hooked(module, OUTPUT, quantizer)
                attached[_join(name, ATTRIBUTE[OUTPUT])] = quantizer
    return attached


def activation_quantizers_of(model: nn.Module) -> dict[str, ActivationQuantizer]:
    """Qualified name (e.g. ``"conv2.input_quantizer"``) -> quantizer, in module order."""
    return {name: module for name, module in model.named_modules() if isinstance(module, ActivationQuantizer)}


@torch.no_grad()
def calibrate_activations(model: nn.Module, batches: Iterable[Tensor | tuple[Tensor, ...]]) -> int:
    """Reset every activation quantizer of ``model`` to calibration, run ``batches`` (input
    tensors, or tuples whose first element is the input, already on the model's device) in eval
    mode without gradients, then freeze them all. Returns the number of images run.

    The model's training/eval mode is restored afterwards.
    """
    quantizers = activation_quantizers_of(model)
    if not quantizers:
        raise UserError("the model has no activation quantizers to calibrate")
    was_training = model.training
    for quantizer in quantizers.values():
        quantizer.calibrate()
    seen = 0
    model.eval()
    try:
        with parametrize.cached():
            for batch in batches:
                inputs = batch[0] if isinstance(batch, (tuple, list)) else batch
                model(inputs)
                seen += int(inputs.shape[0])
    finally:
        model.train(was_training)
    if seen == 0:
        raise UserError("calibration needs at least one image")
    silent = [name for name, q in quantizers.items() if not q.observer.has_observed]
    if silent:
        raise UserError(f"calibration never reached {', '.join(silent)}")
    for quantizer in quantizers.values():
        quantizer.freeze()
    return seen


def describe_activation_quantizers(model: nn.Module) -> list[dict[str, Any]]:
    """One record per attached quantizer, in module order:
    ``{"module": qualified layer name, "role": "input" | "output", "args": spec}``."""
    return describe_hooked_submodules(model, KIND)


def restore_activation_quantizers(model: nn.Module, records: Iterable[Mapping[str, Any]]) -> None:
    """Re-attach the quantizers ``records`` describe (from a model file), before the state dict
    (scale, zero point, observer buffers) is loaded."""
    restore_hooked_submodules(model, KIND, records)


def remove_activation_quantizers(model: nn.Module) -> nn.Module:
    """Detach every activation quantizer and its hook (in place; returns ``model``)."""
    return detach_hooked_submodules(model, KIND)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name
