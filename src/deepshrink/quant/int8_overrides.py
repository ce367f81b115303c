"""The model's own quantization grids as ONNX Runtime ``TensorQuantOverrides``, so that an int8
export computes on the levels that PTQ/QAT chose instead of levels ORT calibrates itself.

- **Weights.** A Conv/Linear whose weight ends in a :class:`LinearQuantizer` of at most 8 bits
  holds ``weight = scale_c * L`` with integer levels ``L = q - zero_point``; where every
  ``|L| <= 127`` it becomes per-output-channel int8 with zero point 0. The ONNX weight may be the
  baked weight times a factor ``r_c`` per output channel (the exporter folds a following
  BatchNorm into the conv: ``W' = W * gamma_c / sigma_c``). The factor is measured by comparing
  the two tensors rather than assumed, whoever folded and whatever the initializer is called, and
  the override scale is ``scale_c * |r_c|``: the int8 values are then ``sign(r_c) * L`` and
  represent ``W'`` exactly (up to float32 rounding of the product).
- **Activations.** A frozen 8-bit input quantizer of a Conv/Linear pins the tensor the layer's
  ONNX node reads (asymmetric: uint8 with our scale and zero point; symmetric: int8, zero point
  0); an output quantizer (ReLU6's) pins its module's output. ORT quantizes the output of
  MaxPool/Flatten/Reshape/... with its input's parameters, and those operators commute with a
  per-tensor quantization, so the same parameters are also pinned on the tensors upstream
  through them (as long as nothing else reads those tensors).

Anything else (k-means weights, 16-bit or lower-bit activations, layers the mapping cannot find)
is left to ORT's calibration, and the reason is reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from deepshrink.quant.activation import ATTRIBUTE, INPUT, OUTPUT, ActivationQuantizer
from deepshrink.quant.api import quantizer_of
from deepshrink.quant.linear import quant_params, quantize_levels
from deepshrink.quant.quantizers import LinearQuantizer

if TYPE_CHECKING:
    import onnx

INT8_LIMIT = 127  # |level| of a weight stored as int8 with zero point 0
REDUCED_LIMIT = 64  # ORT's reduce_range int8 weights: 2 * 255 * 64 fits int16 (no AVX2 saturation)
LAYER_OPS = ("Conv", "Gemm", "MatMul")
# ops whose output ORT quantizes with its input's parameters and that commute with a
# per-tensor quantization (reordering elements, or a max over them)
PASS_THROUGH_OPS = ("MaxPool", "Flatten", "Reshape", "Squeeze", "Unsqueeze", "Transpose")


@dataclass(frozen=True)
class _Expectation:
    """Parameters an owner asked for, and where to find them in the quantized graph: the
    DequantizeLinear feeding input ``index`` of node ``node`` (weights), or the QuantizeLinear of
    ``tensor`` (activations)."""

    owner: str
    scale: tuple[float, ...]  # float32 values
    zero_point: tuple[int, ...]
    node: str = ""
    index: int = 1
    tensor: str = ""


@dataclass
class ModelOverrides:
    """What :func:`model_overrides` found.

    ``tensors`` is ORT's ``TensorQuantOverrides`` value (tensor name -> list of dicts, one per
    channel for weights); ``weights`` and ``activations`` name the layers and quantizers that
    were pinned; ``skipped`` maps a layer or quantizer name to why it was left to ORT;
    ``signed_activations`` says whether an activation is pinned to int8 (then ORT must keep
    Relu/Clip nodes, which it would otherwise fold into an asymmetric quantization).
    :meth:`confirm` checks the quantized graph against what was asked for.
    """

    tensors: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    weights: list[str] = field(default_factory=list)
    activations: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    signed_activations: bool = False
    expected: list[_Expectation] = field(default_factory=list)

    def confirm(self, quantized: "onnx.ModelProto") -> None:
        """Move every owner whose parameters the quantized graph does not carry (ORT adjusts a
        weight scale whose int32 bias would overflow, and shares a parameter pair across
        MaxPool/Reshape/... where it cannot be pinned upstream) from the pinned lists to
        :attr:`skipped`."""
        found = _GraphParams(quantized)
        for expectation in self.expected:
            params = (found.feeding(expectation.node, expectation.index) if expectation.node
                      else found.quantizing(expectation.tensor))
            if params != (expectation.scale, expectation.zero_point):
                self.skip(expectation.owner, "ONNX Runtime did not use these parameters")

    def skip(self, owner: str, reason: str) -> None:
        """Record ``owner`` as left to ORT's calibration."""
        self.skipped.setdefault(owner, reason)
        for pinned in (self.weights, self.activations):
            if owner in pinned:
                pinned.remove(owner)


@dataclass(frozen=True)
class _Wish:
    """One tensor's override as one owner (a layer or a quantizer) wants it."""

    owner: str
    role: str  # "weight", INPUT or OUTPUT
    entries: tuple[tuple[tuple[str, Any], ...], ...]  # per channel: (key, value) pairs, sorted


def module_of_node(node_name: str) -> str:
    """The qualified name of the module whose forward created an ONNX node, from the node's
    name; "" for the top level. The TorchScript exporter names a node by the scopes of the
    modules it runs in, one per level of the module tree, then the operator; a level's scope
    ends with the child's attribute name, which a container's numbered child extends back to
    its last non-numeric atom (``/layer1/layer1.0/conv1/Conv`` for ``layer1.0.conv1``)."""
    qualified = ""
    for scope in node_name.split("/")[1:-1]:
        qualified = _join(qualified, scope.rsplit(".", 1)[-1])
    return qualified


def module_nodes(graph: "onnx.ModelProto", module_names: Sequence[str]) -> list[str]:
    """Names of the ONNX nodes created by the given modules or their submodules."""
    return [node.name for node in graph.graph.node
            if node.name.startswith("/") and _under(module_of_node(node.name), module_names)]


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def int8_weight_levels(module: nn.Module, limit: int = INT8_LIMIT) -> tuple[Tensor, Tensor] | str:
    """``(levels, scale)`` with ``module.weight == scale.view(-1, 1, ...) * levels`` bit for bit:
    levels (weight's shape, int64, all in [-limit, limit]) and scale (C_out,) float32, for a
    Conv/Linear whose weight's last parametrization is a LinearQuantizer of at most 8 bits.
    Otherwise a string saying why not."""
    if not isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)) or getattr(module, "transposed", False):
        return "not a Conv/Linear layer"
    quantizer = quantizer_of(module)
    if quantizer is None:
        return "weight not quantized"
    if not isinstance(quantizer, LinearQuantizer):
        return f"{type(quantizer).__name__} levels are not a linear grid"
    chain = module.parametrizations.weight
    *before, last = list(chain)
    if last is not quantizer:
        return "the weight quantizer is not last in its parametrization chain"
    if quantizer.bits > 8:
        return f"{quantizer.bits}-bit weights do not fit int8"
    with torch.no_grad():
        x = chain.original.detach().float().cpu()
        for step in before:
            x = step(x)
        scale, zero_point = quant_params(x, quantizer.bits, quantizer.symmetric, quantizer.per_channel)
        levels = quantize_levels(x, scale, zero_point, quantizer.qmin, quantizer.qmax) - zero_point
    if levels.abs().max() > limit:
        what = "int8's" if limit == INT8_LIMIT else "the reduced range"
        return f"levels q - zero_point exceed {what} [-{limit}, {limit}]"
    return levels.long(), scale.reshape(-1).expand(x.shape[0]).contiguous()


def activation_override(quantizer: ActivationQuantizer) -> dict[str, Any] | str:
    """ORT's per-tensor override for a frozen 8-bit quantizer, or a string saying why none."""
    from onnxruntime.quantization import QuantType

    if not quantizer.frozen:
        return "activation quantizer not calibrated (not frozen)"
    if quantizer.bits != 8:
        return f"{quantizer.bits}-bit activations have no int8 type"
    if quantizer.symmetric:
        return {"quant_type": QuantType.QInt8, "scale": float(quantizer.scale), "zero_point": 0}
    return {"quant_type": QuantType.QUInt8, "scale": float(quantizer.scale),
            "zero_point": int(quantizer.zero_point)}


def model_overrides(graph: "onnx.ModelProto", model: nn.Module, keep_float: Sequence[str] = (),
                    reduce_range: bool = False) -> ModelOverrides:
    """The overrides that make ORT's static quantization of ``graph`` (the ONNX export of
    ``model``, as handed to ``quantize_static``) use ``model``'s weight and activation
    quantizers. Modules named in ``keep_float`` (and their submodules) are left alone. With
    ``reduce_range`` only weights whose levels fit [-64, 64] keep them (ORT's 7-bit weights).

    A tensor wanted with different parameters by a layer's input quantizer and another
    module's output quantizer (a ReLU6 feeding a layer) takes the input quantizer's, which
    decides the values the layer reads; any other disagreement leaves the tensor to ORT.
    """
    from onnxruntime.quantization import QuantType

    index, result, wishes = _OnnxIndex(graph), ModelOverrides(), {}

    def wish(tensor: str, owner: str, role: str, entries: list[dict[str, Any]]) -> None:
        frozen = tuple(tuple(sorted(entry.items())) for entry in entries)
        wishes.setdefault(tensor, []).append(_Wish(owner, role, frozen))

    for name, module in model.named_modules():
        if not name or _under(name, keep_float):
            continue
        is_layer = isinstance(module, (nn.Linear, nn.modules.conv._ConvNd))
        node = index.layer_node(name) if is_layer else None
        if is_layer and quantizer_of(module) is not None:
            weight = _weight_override(index, node, module, REDUCED_LIMIT if reduce_range else INT8_LIMIT)
            if isinstance(weight, str):
                result.skipped[name] = weight
            else:
                wish(weight[0], name, "weight", weight[1])
                result.expected.append(_Expectation(name, *_params_of(weight[1]), node=node.name, index=1))
        for role in (INPUT, OUTPUT):
            quantizer = getattr(module, ATTRIBUTE[role], None)
            if not isinstance(quantizer, ActivationQuantizer):
                continue
            owner = f"{name}.{ATTRIBUTE[role]}"
            override = activation_override(quantizer)
            if role == INPUT:
                tensor = node.input[0] if node is not None else None
            else:
                tensor = index.module_output(name)
            if isinstance(override, str) or tensor is None:
                result.skipped[owner] = override if isinstance(override, str) else "no matching ONNX tensor"
                continue
            for pinned in index.through_pass_through_ops(tensor):
                wish(pinned, owner, role, [override])
            result.expected.append(_Expectation(owner, *_params_of([override]), tensor=tensor))

    for tensor, wanted in wishes.items():
        chosen = _settle(wanted)
        for w in wanted:
            if chosen is None:
                result.skip(w.owner, f"{tensor} is wanted with different parameters by "
                                     f"{', '.join(sorted({x.owner for x in wanted}))}")
            elif w.entries != chosen.entries:
                result.skip(w.owner, f"{tensor} is quantized as {chosen.owner} says")
        if chosen is None:
            continue
        entries = [dict(entry) for entry in chosen.entries]
        if chosen.role != "weight":
            entries = [_as_arrays(entry) for entry in entries]
            result.signed_activations |= entries[0]["quant_type"] == QuantType.QInt8
        result.tensors[tensor] = entries
    for tensor, wanted in wishes.items():
        for w in wanted:
            pinned = result.weights if w.role == "weight" else result.activations
            if w.owner not in result.skipped and w.owner not in pinned:
                pinned.append(w.owner)
    return result


def _settle(wanted: list[_Wish]) -> _Wish | None:
    """The wish a tensor follows: the only one wanted, else the only one its input quantizers
    want, else None."""
    for candidates in (wanted, [w for w in wanted if w.role == INPUT]):
        if candidates and len({w.entries for w in candidates}) == 1:
            return candidates[0]
    return None


def _params_of(entries: list[dict[str, Any]]) -> tuple[tuple[float, ...], tuple[int, ...]]:
    """(float32 scales, zero points) of override entries, as the graph will store them."""
    return (tuple(float(np.float32(e["scale"])) for e in entries), tuple(int(e["zero_point"]) for e in entries))


class _GraphParams:
    """Looks up the scale and zero point that quantize a tensor of a QDQ graph."""

    def __init__(self, graph: "onnx.ModelProto"):
        from onnx import numpy_helper

        self.values = {init.name: numpy_helper.to_array(init) for init in graph.graph.initializer}
        self.nodes = {node.name: node for node in graph.graph.node}
        self.producers = {out: node for node in graph.graph.node for out in node.output}
        self.quantizers = {node.input[0]: node for node in graph.graph.node if node.op_type == "QuantizeLinear"}

    def feeding(self, node_name: str, index: int) -> tuple[tuple[float, ...], tuple[int, ...]] | None:
        node = self.nodes.get(node_name)
        source = self.producers.get(node.input[index]) if node is not None and len(node.input) > index else None
        return self._params(source) if source is not None and source.op_type == "DequantizeLinear" else None

    def quantizing(self, tensor: str) -> tuple[tuple[float, ...], tuple[int, ...]] | None:
        node = self.quantizers.get(tensor)
        return self._params(node) if node is not None else None

    def _params(self, node) -> tuple[tuple[float, ...], tuple[int, ...]] | None:
        if len(node.input) < 3 or node.input[1] not in self.values or node.input[2] not in self.values:
            return None
        scale, zero_point = self.values[node.input[1]], self.values[node.input[2]]
        return (tuple(float(v) for v in scale.astype(np.float32).reshape(-1)),
                tuple(int(v) for v in zero_point.reshape(-1)))


def _as_arrays(entry: dict[str, Any]) -> dict[str, Any]:
    """An activation override as ORT reads it: scale and zero point as 0-dim numpy arrays
    (float32, and the quantized type's integer dtype)."""
    zero_point_dtype = np.int8 if entry["quant_type"].name == "QInt8" else np.uint8
    return {**entry, "scale": np.array(entry["scale"], dtype=np.float32),
            "zero_point": np.array(entry["zero_point"], dtype=zero_point_dtype)}


def _under(name: str, module_names: Sequence[str]) -> bool:
    return any(name == m or name.startswith(m + ".") for m in module_names)


class _OnnxIndex:
    """Lookups into the float ONNX graph that ORT will quantize."""

    def __init__(self, graph: "onnx.ModelProto"):
        self.initializers = {init.name: init for init in graph.graph.initializer}
        self.producers = {out: node for node in graph.graph.node for out in node.output}
        self.readers: dict[str, int] = {}  # tensor -> number of nodes reading its values
        self.by_module: dict[str, list] = {}  # module -> the nodes its own forward created
        for node in graph.graph.node:
            if node.op_type != "Shape":
                for name in node.input:
                    self.readers[name] = self.readers.get(name, 0) + 1
            if node.name.startswith("/"):
                self.by_module.setdefault(module_of_node(node.name), []).append(node)

    def layer_node(self, name: str):
        """The single Conv/Gemm/MatMul node of layer ``name``, or None."""
        found = [node for node in self.by_module.get(name, []) if node.op_type in LAYER_OPS]
        return found[0] if len(found) == 1 else None

    def module_output(self, name: str) -> str | None:
        """The output of module ``name``'s single non-Constant node, or None."""
        found = [node for node in self.by_module.get(name, []) if node.op_type != "Constant"]
        return found[0].output[0] if len(found) == 1 else None

    def through_pass_through_ops(self, tensor: str) -> list[str]:
        """``tensor`` and the tensors upstream of it through :data:`PASS_THROUGH_OPS`, stopping
        at a tensor that another node reads too."""
        chain = [tensor]
        node = self.producers.get(tensor)
        while node is not None and node.op_type in PASS_THROUGH_OPS and self.readers.get(node.input[0]) == 1:
            chain.append(node.input[0])
            node = self.producers.get(node.input[0])
        return chain


def _weight_override(index: _OnnxIndex, node, module: nn.Module,
                     limit: int) -> tuple[str, list[dict[str, Any]]] | str:
    """(initializer name, per-channel overrides) of the layer's ONNX weight (levels within
    [-limit, limit]), or why none."""
    from onnx import numpy_helper
    from onnxruntime.quantization import QuantType

    grid = int8_weight_levels(module, limit)
    if isinstance(grid, str):
        return grid
    levels, scale = grid
    if node is None:
        return "no single Conv/Gemm/MatMul node in the ONNX graph"
    if len(node.input) < 2 or node.input[1] not in index.initializers:
        return f"ONNX node {node.name} reads no weight initializer"
    onnx_weight = numpy_helper.to_array(index.initializers[node.input[1]])
    baked = (scale.double().view(-1, *([1] * (levels.dim() - 1))) * levels.double()).numpy()
    transposed = node.op_type == "MatMul" or (node.op_type == "Gemm" and _attribute(node, "transB") == 0)
    layout = onnx_weight.T if transposed and onnx_weight.ndim == 2 else onnx_weight
    if layout.shape != baked.shape:
        return f"ONNX weight {node.input[1]} has shape {list(onnx_weight.shape)}, the layer {list(baked.shape)}"
    factors = _channel_factors(layout, baked)
    if factors is None:
        return "ONNX weight is not a per-channel multiple of the quantized weight"
    channel_scales = scale.double().numpy() * np.where(factors != 0, np.abs(factors), 1.0)
    axis = 1 if transposed else 0
    return node.input[1], [{"axis": axis, "quant_type": QuantType.QInt8, "scale": float(s), "zero_point": 0}
                           for s in channel_scales]


def _channel_factors(onnx_weight: np.ndarray, baked: np.ndarray) -> np.ndarray | None:
    """r (C,) with ``onnx_weight[c] == r[c] * baked[c]`` to float32 precision (least squares per
    output channel; 1 for an all-zero channel, which must stay all zero), or None."""
    w = onnx_weight.reshape(len(onnx_weight), -1).astype(np.float64)
    b = baked.reshape(len(baked), -1)
    norm = (b * b).sum(axis=1)
    factors = np.where(norm > 0, (w * b).sum(axis=1) / np.where(norm > 0, norm, 1.0), 1.0)
    residual = np.abs(w - factors[:, None] * b).max(axis=1, initial=0.0)
    tolerance = 1e-5 * np.abs(w).max(axis=1, initial=0.0)
    return factors if np.all(residual <= tolerance) else None


def _attribute(node, name: str, default: int = 0) -> int:
    return next((a.i for a in node.attribute if a.name == name), default)
