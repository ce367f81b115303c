"""What a model costs per input: MACs, parameters, memory accesses and size, per layer and in total.

Costs come from forward hooks on one real forward pass of a single input (batch 1), so output
sizes are the true ones. Each module type has a *rule* in :data:`COST_RULES` that says what one
call of it costs; register more with :func:`cost_rule` (an adder layer's rule, say). For a
k x k convolution with C input and output channels on an H x W output map the rules give:

=================  ===============  ===============
layer              MACs             parameters
=================  ===============  ===============
regular            H·W·k²·C²        k²·C² + C
depthwise          H·W·k²·C         k²·C + C
pointwise (1x1)    H·W·C²           C² + C
=================  ===============  ===============

A depthwise-separable convolution is a depthwise row followed by a pointwise row. Bias
additions are not MACs. BatchNorm, activations, pooling and other parameter-free layers are
zero-MAC memory operations. Operations written as functions (``F.relu`` inside ``forward``)
are invisible to hooks and not counted; the attention matmuls of
:class:`~deepshrink.models.zoo.vit.MultiHeadSelfAttention` are counted by its own rule.

Memory accesses are per call: input elements read, weight elements read (every parameter
once) and output elements written; bytes use the tensor's dtype, and for weights the
quantized size. Weights seen through parametrizations (masks, quantizers) are counted by
their *effective* values: ``sparse_macs`` counts only MACs with a non-zero weight, and a
weight with a quantizer on its parametrization chain (``quantized_representation(original) ->
(codebook (G, K), indices)``) takes ceil(log2 K) bits per element plus 32 bits per codebook entry;
other tensors take their dtype's width (32 bits for float32).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Callable

import torch
from torch import nn
from torch.nn.utils import parametrize

from deepshrink.errors import UserError
from deepshrink.models.attach import effective_tensors, quantized_representation_of
from deepshrink.models.layers.adder import AdderConv2d
from deepshrink.models.zoo.vit import MultiHeadSelfAttention

__all__ = ["COST_RULES", "CostReport", "LayerCost", "OpCost", "cost_rule", "format_costs", "model_costs",
           "operand_accesses"]


@dataclass
class OpCost:
    """What one call of a module costs (elements; batch as in the call)."""

    kind: str
    macs: int = 0
    sparse_macs: int = 0
    input_reads: int = 0
    output_writes: int = 0
    adds: int = 0


@dataclass
class LayerCost:
    """One layer's cost for one input; memory in elements and in bytes."""

    name: str
    kind: str
    macs: int = 0
    sparse_macs: int = 0     # MACs whose weight is non-zero
    adds: int = 0            # additions/subtractions of multiplication-free (adder) layers
    params: int = 0          # elements of the layer's own (effective) tensors
    size_bits: int = 0       # storage of those tensors under the current quantization
    input_reads: int = 0
    weight_reads: int = 0
    output_writes: int = 0
    input_bytes: int = 0
    weight_bytes: int = 0
    output_bytes: int = 0


TOTAL_FIELDS = tuple(f.name for f in fields(LayerCost) if f.name not in ("name", "kind"))


@dataclass
class CostReport:
    """Per-layer costs (in forward order) for one input of shape ``input_shape``."""

    input_shape: tuple[int, ...]
    layers: list[LayerCost]

    @property
    def totals(self) -> dict[str, int]:
        return {key: sum(getattr(row, key) for row in self.layers) for key in TOTAL_FIELDS}

    def to_dict(self) -> dict:
        """Totals at the top level (``macs``, ``params``, ...), plus ``input_shape`` and ``layers``."""
        return {**self.totals, "input_shape": list(self.input_shape),
                "layers": [asdict(row) for row in self.layers]}


Rule = Callable[[nn.Module, tuple, torch.Tensor], OpCost]  # (module, inputs, output) of one call
COST_RULES: dict[type, Rule | None] = {}  # None: a no-op that gets no row


def cost_rule(*types: type) -> Callable[[Rule], Rule]:
    """Decorator: ``rule(module, inputs, output) -> OpCost`` for modules of ``types`` (and subclasses)."""

    def register(rule: Rule) -> Rule:
        for cls in types:
            COST_RULES[cls] = rule
        return rule

    return register


def _tensors(value) -> list[torch.Tensor]:
    """The tensors in a call's inputs or output (a tensor, or a tuple/list of them)."""
    values = value if isinstance(value, (tuple, list)) else (value,)
    return [v for v in values if isinstance(v, torch.Tensor)]


def _numel(value) -> int:
    return sum(t.numel() for t in _tensors(value))


def _element_size(value) -> int:
    return next((t.element_size() for t in _tensors(value)), 4)


def _weight_uses(weight: torch.Tensor, dense_macs: int) -> tuple[int, int]:
    """(dense MACs, MACs with non-zero weights): every weight element is used equally often."""
    uses = dense_macs // weight.numel()
    return dense_macs, uses * int(torch.count_nonzero(weight))


def conv_kind(conv: nn.Conv2d) -> str:
    """``conv``, ``depthwise`` (one input channel per group), ``grouped`` or ``pointwise`` (1x1)."""
    if conv.groups > 1:
        return "depthwise" if conv.groups == conv.in_channels else "grouped"
    return "pointwise" if tuple(conv.kernel_size) == (1, 1) else "conv"


@cost_rule(nn.Conv1d, nn.Conv2d, nn.Conv3d)
def conv_cost(conv: nn.Module, inputs: tuple, output: torch.Tensor) -> OpCost:
    """Each weight element is used once per output position: MACs = positions · weight elements."""
    positions = output.numel() // output.shape[1]  # N · H_out · W_out
    macs, sparse = _weight_uses(conv.weight, positions * conv.weight.numel())
    kind = conv_kind(conv) if isinstance(conv, nn.Conv2d) else "conv"
    return OpCost(kind, macs, sparse, _numel(inputs[:1]), output.numel())


@cost_rule(nn.Linear)
def linear_cost(linear: nn.Linear, inputs: tuple, output: torch.Tensor) -> OpCost:
    """MACs = rows · in_features · out_features (rows: batch times any token dimensions)."""
    rows = output.numel() // linear.out_features
    macs, sparse = _weight_uses(linear.weight, rows * linear.weight.numel())
    return OpCost("linear", macs, sparse, _numel(inputs[:1]), output.numel())


def operand_accesses(layer: LayerCost) -> int:
    """Memory accesses of ``layer`` without reuse, the textbook count: every MAC reads one input
    and one weight element and every output element is written once, 2·MACs + outputs. For a k x k
    convolution with C input and output channels on an H x W output map: regular 2·H·W·k²·C² +
    H·W·C, depthwise 2·H·W·k²·C + H·W·C, pointwise 2·H·W·C² + H·W·C. The report's
    ``input_reads + weight_reads + output_writes`` is the other bound: every element moved once.
    A layer without MACs (BatchNorm, pooling) gets its reads plus writes."""
    if layer.macs:
        return 2 * layer.macs + layer.output_writes
    return layer.input_reads + layer.weight_reads + layer.output_writes


@cost_rule(MultiHeadSelfAttention)
def attention_cost(attn: MultiHeadSelfAttention, inputs: tuple, output: torch.Tensor) -> OpCost:
    """The two matmuls Q·Kᵀ and softmax·V, each N·heads·T²·d_k MACs (projections are Linear rows).

    Reads Q, K, V and the softmax weights; writes the scores and the per-head context.
    """
    n, tokens, dim = inputs[0].shape
    scores = n * attn.heads * tokens * tokens
    macs = 2 * scores * attn.head_dim
    return OpCost("attention", macs, macs, 3 * n * tokens * dim + scores, scores + n * tokens * dim)


@cost_rule(AdderConv2d)
def adder_cost(adder: AdderConv2d, inputs: tuple, output: torch.Tensor) -> OpCost:
    """No multiplications: each weight use is one subtraction, one |.| and one accumulation,
    counted as 2 adds per use (positions · weight elements uses, as for a convolution)."""
    positions = output.numel() // output.shape[1]
    return OpCost("adder", input_reads=_numel(inputs[:1]), output_writes=output.numel(),
                  adds=2 * positions * adder.weight.numel())


def _memory_op(kind: str) -> Rule:
    def rule(module: nn.Module, inputs: tuple, output: torch.Tensor) -> OpCost:
        return OpCost(kind, input_reads=_numel(inputs), output_writes=_numel(output))

    return rule


cost_rule(nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm)(_memory_op("norm"))
cost_rule(nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Hardtanh, nn.LeakyReLU,
          nn.Softmax)(_memory_op("activation"))
cost_rule(nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)(_memory_op("pool"))
COST_RULES.update({nn.Identity: None, nn.Dropout: None, nn.Flatten: None})


def _rule_for(module: nn.Module) -> tuple[bool, Rule | None]:
    """(found, rule) from the closest registered class in the module's MRO."""
    for cls in type(module).__mro__:
        if cls in COST_RULES:
            return True, COST_RULES[cls]
    return False, None


def _tensor_bits(module: nn.Module, name: str, tensor: torch.Tensor) -> int:
    """Storage bits of ``module.name``: quantized indices plus codebook, or the dtype width."""
    representation = quantized_representation_of(module, name)
    if representation is not None:
        codebook, _ = representation
        index_bits = max(1, math.ceil(math.log2(codebook.shape[-1])))
        return tensor.numel() * index_bits + codebook.numel() * 32
    return tensor.numel() * tensor.element_size() * 8


def _storage(module: nn.Module) -> tuple[int, int]:
    """(elements, bits) of the module's own tensors."""
    tensors = effective_tensors(module)
    return (sum(t.numel() for t in tensors.values()),
            sum(_tensor_bits(module, name, t) for name, t in tensors.items()))


def _parametrization_modules(model: nn.Module) -> set[int]:
    """ids of the modules that implement parametrizations (their calls are not layers)."""
    inside = set()
    for module in model.modules():
        if parametrize.is_parametrized(module):
            inside.update(id(m) for m in module.parametrizations.modules())
    return inside


class _Recorder:
    """Forward hooks that turn each module call into (accumulated) rows."""

    def __init__(self, model: nn.Module):
        self.rows: dict[str, LayerCost] = {}
        self.handles = []
        skip = _parametrization_modules(model)
        for name, module in model.named_modules():
            found, rule = _rule_for(module)
            leaf = next(module.children(), None) is None
            if id(module) in skip or (found and rule is None) or (not found and not leaf):
                continue
            rule = rule or _memory_op(type(module).__name__.lower())
            self.handles.append(module.register_forward_hook(self._hook(name, rule)))

    def _hook(self, name: str, rule: Rule):
        def record(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            op = rule(module, inputs, output)
            row = self.rows.get(name) or self._new_row(name, op.kind, module)
            row.macs += op.macs
            row.adds += op.adds
            row.sparse_macs += op.sparse_macs
            row.input_reads += op.input_reads
            row.output_writes += op.output_writes
            row.weight_reads += row.params
            row.input_bytes += op.input_reads * _element_size(inputs)
            row.output_bytes += op.output_writes * _element_size(output)
            row.weight_bytes += math.ceil(row.size_bits / 8)

        return record

    def _new_row(self, name: str, kind: str, module: nn.Module) -> LayerCost:
        params, bits = _storage(module)
        row = LayerCost(name or "(model)", kind, params=params, size_bits=bits)
        self.rows[name] = row
        return row

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def _parameter_rows(model: nn.Module, counted: dict[str, LayerCost]) -> list[LayerCost]:
    """Rows for modules whose own parameters no rule counted (e.g. a ViT's position embedding),
    read once per input."""
    skip = _parametrization_modules(model)
    rows = []
    for name, module in model.named_modules():
        if name in counted or id(module) in skip:
            continue
        params, bits = _storage(module)
        if params:
                rows.append(LayerCost(name or "(model)", "parameters", params=params, size_bits=bits,
                                  weight_reads=params, weight_bytes=math.ceil(bits / 8)))
    return rows


@torch.no_grad()
def model_costs(model: nn.Module, input_shape: tuple[int, ...]) -> CostReport:
    """Costs of ``model`` for one input of shape ``input_shape`` (e.g. (C, H, W), no batch dim).

    Runs one forward pass in eval mode (the training mode is restored afterwards).
    """
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    recorder = _Recorder(model)
    was_training = model.training
    try:
        model.eval()
        try:
            model(torch.randn(1, *input_shape, generator=torch.Generator().manual_seed(0)).to(device, dtype))
        except RuntimeError as exc:  # a shape from a file that the layers cannot take (too small, wrong channels)
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise UserError(f"input shape {tuple(input_shape)} does not fit the model ({reason})") from None
    finally:
        recorder.remove()
        model.train(was_training)
    rows = list(recorder.rows.values())
    return CostReport(tuple(input_shape), rows + _parameter_rows(model, recorder.rows))


def format_costs(report: CostReport) -> str:
    """A fixed-width table: one line per layer, then the totals."""
    header = (f"{'layer':<28} {'kind':<15} {'MACs':>13} {'sparse MACs':>13} {'params':>10} "
              f"{'size KiB':>9} {'reads (elem)':>12} {'writes (elem)':>13} {'traffic KiB':>11}")
    lines = [header, "-" * len(header)]
    totals = report.totals
    for row in [*report.layers, LayerCost("total", "", **totals)]:
        if row.name == "total":
            lines.append("-" * len(header))
        traffic = (row.input_bytes + row.weight_bytes + row.output_bytes) / 1024
        lines.append(f"{row.name[-28:]:<28} {row.kind[:15]:<15} {row.macs:>13,} {row.sparse_macs:>13,} "
                     f"{row.params:>10,} {row.size_bits / 8192:>9.1f} "
                     f"{row.input_reads + row.weight_reads:>12,} {row.output_writes:>13,} {traffic:>11.1f}")
    shape = "x".join(map(str, report.input_shape))
    lines.append(f"per {shape} input: {totals['macs'] / 1e6:.2f} M MACs "
                 f"({totals['sparse_macs'] / 1e6:.2f} M with non-zero weights), "
                 + (f"{totals['adds'] / 1e6:.2f} M adder adds, " if totals["adds"] else "") +
                 f"{totals['params']:,} parameters, {totals['size_bits'] / 8192:.1f} KiB")
    lines.append("reads/writes: elements (not bytes) per input: input activations plus every weight once, "
                 "and output activations; traffic KiB: the same in bytes (activations at their dtype, "
                 "weights at their stored bits); size KiB: the layer's tensors at their stored bits")
    return "\n".join(lines)
