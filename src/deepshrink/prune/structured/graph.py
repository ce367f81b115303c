"""The dependency graph: which channels of which tensors must shrink together.

The model is traced with ``torch.fx`` and its nodes run once on an example input to learn
every tensor's shape. Every output channel of a Conv2d or Linear is an *atom*; walking the
graph, each tensor value knows the atom of each index along its channel axis, and operations
couple atoms (a union-find): an addition couples the channels of its inputs index by index,
a concatenation lays its inputs' channels end to end, a flatten into a Linear turns each
channel into a block of features, a depthwise convolution and a BatchNorm keep the channels of
their input, a channel placer (a layer registered with
:func:`~deepshrink.models.channels.register_channel_placer`, such as the option-A zero-padding
shortcut of the CIFAR ResNets) places its input channels between fresh zero channels, a grouped
convolution of g groups couples channel j of every group (of its inputs, and of its filters:
each group keeps the same count). Channel split and shuffle follow the indices: ``chunk``/``split``
into k equal parts couples channel j of every part (so every part keeps the same count); a
``view`` that splits the channel axis into several dimensions (ShuffleNet's (g, C/g)) keeps a
:class:`Split` of atoms over those dimensions, coupling across the dimensions of constant size
so that only the one sized from the tensor shrinks; ``transpose``/``permute`` move those
dimensions and a ``view`` merging them back yields the permuted channels.
Atoms that reach an operation this module does not understand (LayerNorm, attention reshapes,
indexing, the model output, parameters used as tensors) are *blocked*: their channels are left
alone, and the producing layers are reported in :attr:`DependencyGraph.skipped` with the reason.
"""

from __future__ import annotations

import math
import operator
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.node import map_aggregate, map_arg
from torch.fx.passes.shape_prop import ShapeProp

from deepshrink.errors import UserError
from deepshrink.models.channels import ChannelPlacer, is_channel_placer
from deepshrink.prune.structured.group import Group

__all__ = ["DependencyGraph", "trace"]

OPAQUE = "opaque"  # a tensor whose channels are not tracked

_PASS_MODULES = (nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Hardtanh, nn.LeakyReLU,
                 nn.Hardswish, nn.Dropout, nn.Dropout2d, nn.Identity, nn.MaxPool2d, nn.AvgPool2d,
                 nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
_PASS_FUNCTIONS = {F.relu, torch.relu, F.relu6, F.gelu, F.silu, F.hardswish, torch.sigmoid, F.sigmoid,
                   torch.tanh, F.dropout, F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d,
                   F.adaptive_max_pool2d, F.hardtanh, F.leaky_relu, operator.neg}
_PASS_METHODS = {"relu", "sigmoid", "tanh", "contiguous", "clone"}
_ADD = {operator.add, operator.sub, torch.add, torch.sub, "add", "sub"}
_ELEMENTWISE = _ADD | {operator.mul, operator.truediv, torch.mul, torch.div, "mul", "div"}
_RESHAPE = {torch.flatten, torch.reshape, "flatten", "view", "reshape"}
_REDUCE = {torch.mean, torch.sum, torch.amax, "mean", "sum", "amax"}
_SPLIT = {torch.chunk, torch.split, "chunk", "split"}
_PERMUTE = {torch.transpose, torch.permute, "transpose", "permute"}


@dataclass(frozen=True)
class Chan:
    """A tensor of ``ndim`` dimensions whose index i along ``axis`` is channel atom ``ids[i]``."""

    axis: int
    ids: tuple[int, ...]
    ndim: int


@dataclass(frozen=True)
class Split:
    """A tensor of ``ndim`` dimensions whose channel axis was split into dimensions ``axes``:
    ``ids[i, j, ...]`` is the atom at index (i, j, ...) along them."""

    axes: tuple[int, ...]
    ids: torch.Tensor
    ndim: int


class _Tracer(fx.Tracer):
    """Keeps channel placers whole and remembers the innermost module a failure happened in."""

    def __init__(self) -> None:
        super().__init__()
        self.failed_in: str | None = None

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return is_channel_placer(m) or super().is_leaf_module(m, qualname)

    def call_module(self, m, forward, args, kwargs):
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception:
            if self.failed_in is None:
                self.failed_in = self.path_of_module(m) or type(m).__name__
            raise


def trace(model: nn.Module) -> fx.GraphModule:
    """``torch.fx`` trace of ``model`` (sharing its modules); a :class:`UserError` naming the
    module whose ``forward`` cannot be traced."""
    tracer = _Tracer()
    try:
        graph = tracer.trace(model)
    except Exception as exc:  # fx raises many types for untraceable Python
        where = tracer.failed_in or type(model).__name__
        lines = str(exc).strip().splitlines()
        raise UserError(f"structured pruning cannot trace {where!r} with torch.fx "
                        f"({type(exc).__name__}: {lines[0] if lines else 'no message'})") from None
    return fx.GraphModule(model, graph)


@torch.no_grad()
def _propagate_shapes(gm: fx.GraphModule, model: nn.Module, input_shape: tuple[int, ...]) -> None:
    """Fill ``node.meta['tensor_meta']`` from one eval-mode pass on a batch of 2 random inputs."""
    was_training = model.training
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    try:
        model.eval()
        ShapeProp(gm).propagate(torch.randn(2, *input_shape, device=device))
    finally:
        model.train(was_training)


def _shape(node: fx.Node) -> tuple[int, ...] | None | str:
    """The node's output shape; None for non-tensors; OPAQUE for tuples of tensors."""
    meta = node.meta.get("tensor_meta")
    if meta is None:
        return None
    return tuple(meta.shape) if hasattr(meta, "shape") else OPAQUE


def _has_split(values: Any) -> bool:
    found = []
    map_aggregate(values, lambda v: found.append(v) if isinstance(v, Split) else None)
    return bool(found)


def _unchanged_ends(before: tuple[int, ...], after: tuple[int, ...]) -> tuple[int, int]:
    """How many leading and trailing dimensions a reshape leaves as they are."""
    head = 0
    while head < min(len(before), len(after)) and before[head] == after[head]:
        head += 1
    tail = 0
    while tail < min(len(before), len(after)) - head and before[len(before) - 1 - tail] == after[len(after) - 1 - tail]:
        tail += 1
    return head, tail


def _dynamic_sizes(node: fx.Node, ndim: int) -> list[bool] | None:
    """Per output dimension of a view/reshape: whether its size is computed (from the tensor, or
    -1) rather than a constant; None when the sizes cannot be read."""
    sizes = list(node.args[1:]) if node.target in ("view", "reshape") else list(node.args[1:2])
    if "shape" in node.kwargs or "size" in node.kwargs:
        sizes = [node.kwargs.get("shape", node.kwargs.get("size"))]
    if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
        sizes = list(sizes[0])
    if len(sizes) != ndim:
        return None
    return [not isinstance(size, int) or size == -1 for size in sizes]


def _permutation(target: Any, args: tuple, kwargs: dict, ndim: int) -> list[int] | None:
    """The dims of a transpose/permute: new dimension i is old dimension ``perm[i]``."""
    if target in (torch.transpose, "transpose"):
        dims = [kwargs.get("dim0", args[1] if len(args) > 1 else None), kwargs.get("dim1", args[2] if len(args) > 2 else None)]
        if not all(isinstance(d, int) for d in dims):
            return None
        perm = list(range(ndim))
        a, b = dims[0] % ndim, dims[1] % ndim
        perm[a], perm[b] = perm[b], perm[a]
        return perm
    dims = kwargs.get("dims", args[1:] if len(args) > 2 or not isinstance(args[1], (tuple, list)) else args[1])
    dims = list(dims)
    if len(dims) != ndim or not all(isinstance(d, int) for d in dims):
        return None
    return [d % ndim for d in dims]


class DependencyGraph:
    """The coupled channel groups of ``model`` for inputs of shape ``input_shape`` (C, H, W).

    ``groups``: every group that can be pruned (it has at least one producing Conv2d/Linear and
    no blocked channel), in forward order. ``skipped``: module name -> why its output channels
    are left alone. ``order``: module names in forward order.
    """

    def __init__(self, model: nn.Module, input_shape: tuple[int, ...]) -> None:
        self.model = model
        gm = trace(model)
        _propagate_shapes(gm, model, tuple(input_shape))
        self._parent: list[int] = []
        self._slots: list[list[tuple[str, str, int]]] = []
        self._blocked: dict[int, str] = {}
        self._residual: set[int] = set()
        self._repeated: set[str] = set()
        self.order: list[str] = []
        values: dict[fx.Node, Any] = {}
        for node in gm.graph.nodes:
            values[node] = self._visit(node, map_arg((node.args, node.kwargs), lambda n: values[n]))
        self.groups, self.skipped = self._collect()

    def group_of(self, module: str) -> Group:
        """The prunable group named ``module``, else the first one whose channels it produces;
        KeyError if none."""
        for group in sorted(self.groups, key=lambda g: g.name != module):
            if module in group.producers:
                return group
        raise KeyError(f"{module!r} produces no prunable group" +
                       (f" ({self.skipped[module]})" if module in self.skipped else ""))

    # -- atoms --------------------------------------------------------------------------------
    def _new(self, n: int, module: str = "", role: str = "") -> tuple[int, ...]:
        start = len(self._parent)
        self._parent.extend(range(start, start + n))
        self._slots.extend([(module, role, j)] if module else [] for j in range(n))
        return tuple(range(start, start + n))

    def _find(self, atom: int) -> int:
        while self._parent[atom] != atom:
            self._parent[atom] = self._parent[self._parent[atom]]
            atom = self._parent[atom]
        return atom

    def _union(self, a: int, b: int) -> int:
        ra, rb = self._find(a), self._find(b)
        self._parent[rb] = ra
        return ra

    def _attach(self, ids: tuple[int, ...], module: str, role: str) -> None:
        for index, atom in enumerate(ids):
            self._slots[atom].append((module, role, index))

    def _block(self, values: Any, reason: str) -> str:
        def mark(value):
            if isinstance(value, (Chan, Split)):
                for atom in (value.ids.flatten().tolist() if isinstance(value, Split) else value.ids):
                    self._blocked.setdefault(atom, reason)
            return value

        map_aggregate(values, mark)
        return OPAQUE

    # -- nodes --------------------------------------------------------------------------------
    def _visit(self, node: fx.Node, inputs: tuple) -> Any:
        args, kwargs = inputs
        if node.op in ("placeholder", "get_attr"):
            return OPAQUE
        if node.op == "output":
            return self._block(inputs, "feeds the model output")
        target = node.target
        x = args[0] if args else None
        if target is operator.getitem and isinstance(x, tuple) and isinstance(args[1], int):
            return x[args[1]]  # one part of a chunk/split
        shape = _shape(node)
        if shape is None:
            return None
        if target in _SPLIT and isinstance(x, Chan):
            return self._split(node, x, args, kwargs)
        if shape == OPAQUE:
            return self._block(inputs, f"{node.name} returns several tensors")
        if isinstance(x, Split):
            return self._split_axes(node, x, args, kwargs, shape)
        if _has_split(inputs):
            return self._block(inputs, f"{node.name} uses a channel axis split into several dimensions")
        if node.op == "call_module":
            return self._module(node, self.model.get_submodule(node.target), args, shape)
        if target in _PASS_FUNCTIONS or target in _PASS_METHODS:
            return self._passthrough(node, x, shape, inputs)
        if target in _ELEMENTWISE:
            return self._elementwise(node, inputs, shape, residual=target in _ADD)
        if target in _RESHAPE and isinstance(x, Chan):
            return self._reshape(node, x, _shape(node.args[0]), shape, _dynamic_sizes(node, len(shape)))
        if target in _REDUCE and isinstance(x, Chan):
            return self._reduce(node, x, args, kwargs, shape)
        if target is torch.cat:
            return self._cat(node, args, kwargs, shape)
        return self._block(inputs, f"{node.name} ({getattr(target, '__name__', target)}) is not supported")

    def _module(self, node: fx.Node, module: nn.Module, args: tuple, shape: tuple[int, ...]) -> Any:
        name = node.target
        if name in self.order:
            self._repeated.add(name)
        self.order.append(name)
        x = args[0] if args else None
        if isinstance(module, nn.Conv2d):
            return self._conv(name, module, x, shape)
        if isinstance(module, nn.Linear):
            return self._linear(name, module, x, shape)
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and isinstance(x, Chan) and x.axis == 1:
            self._attach(x.ids, name, "bn")
            return x
        if is_channel_placer(module) and isinstance(x, Chan) and x.axis == 1:
            return self._placer(name, module, x, shape)
        if isinstance(module, _PASS_MODULES):
            return self._passthrough(node, x, shape, args)
        if isinstance(module, nn.Flatten) and isinstance(x, Chan):
            return self._reshape(node, x, _shape(node.args[0]), shape, None)
        return self._block(args, f"{name}: {type(module).__name__} is not supported")

    def _conv(self, name: str, conv: nn.Conv2d, x: Any, shape: tuple[int, ...]) -> Chan:
        usable = isinstance(x, Chan) and x.axis == 1
        if isinstance(x, Chan) and not usable:
            self._block(x, f"{name}: convolution over a dimension that is not the channel axis")
        if conv.groups == 1:
            if usable:
                self._attach(x.ids, name, "in")
            return Chan(1, self._new(conv.out_channels, name, "out"), len(shape))
        if conv.groups == conv.in_channels == conv.out_channels and usable:
            self._attach(x.ids, name, "dw")
            return Chan(1, x.ids, len(shape))
        return self._grouped_conv(name, conv, x if usable else None, shape)

    def _grouped_conv(self, name: str, conv: nn.Conv2d, x: Chan | None, shape: tuple[int, ...]) -> Chan:
        """A conv of g groups stays valid if every group loses the same channels: input channel j
        of every group is one channel (index j of weight dim 1, role ``gin``), and so is output
        filter l of every group."""
        g = conv.groups
        per_in, per_out = conv.in_channels // g, conv.out_channels // g
        for j in range(per_in if x is not None else 0):
            for a in range(1, g):
                self._union(x.ids[j], x.ids[a * per_in + j])
            self._slots[x.ids[j]].append((name, "gin", j))
        out = self._new(conv.out_channels, name, "out")
        for l in range(per_out):
            for a in range(1, g):
                self._union(out[l], out[a * per_out + l])
        return Chan(1, out, len(shape))

    def _linear(self, name: str, linear: nn.Linear, x: Any, shape: tuple[int, ...]) -> Chan:
        if isinstance(x, Chan):
            if x.axis == x.ndim - 1:
                self._attach(x.ids, name, "in")
            else:
                self._block(x, f"{name}: Linear over a dimension that is not the channel axis")
        return Chan(len(shape) - 1, self._new(linear.out_features, name, "out"), len(shape))

    def _placer(self, name: str, placer: ChannelPlacer, x: Chan, shape: tuple[int, ...]) -> Chan:
        ids = list(self._new(placer.out_channels))
        for k, position in enumerate(placer.positions):
            ids[position] = x.ids[k]
        self._attach(x.ids, name, "pad_in")
        self._attach(tuple(ids), name, "pad_out")
        return Chan(1, tuple(ids), len(shape))

    def _passthrough(self, node: fx.Node, x: Any, shape: tuple[int, ...], inputs: Any) -> Any:
        if isinstance(x, Chan) and len(shape) == x.ndim and shape[x.axis] == len(x.ids):
            return x
        return self._block(inputs, f"{node.name} changes the channel axis")

    def _elementwise(self, node: fx.Node, inputs: Any, shape: tuple[int, ...], residual: bool) -> Any:
        tensors: list = []
        map_aggregate(inputs, lambda v: tensors.append(v) if isinstance(v, Chan) or v == OPAQUE else None)
        chans = [t for t in tensors if isinstance(t, Chan)]
        first = chans[0] if chans else None
        if (not chans or len(chans) < len(tensors) or len(shape) != first.ndim
                or any((c.axis, len(c.ids), c.ndim) != (first.axis, len(first.ids), first.ndim) for c in chans)
                or shape[first.axis] != len(first.ids)):
            return self._block(inputs, f"{node.name}: elementwise operation on untracked or broadcast tensors")
        ids = tuple(first.ids)
        for other in chans[1:]:
            ids = tuple(self._union(a, b) for a, b in zip(ids, other.ids))
            if residual:
                self._residual.update(ids)
        return Chan(first.axis, ids, first.ndim)

    def _reshape(self, node: fx.Node, x: Chan, before: tuple[int, ...], after: tuple[int, ...],
                 dynamic: list[bool] | None) -> Any:
        """Merging (or splitting off size-1) dimensions; a merged channel axis repeats each atom
        over the merged block in row-major order. Splitting the channel axis alone into several
        dimensions (``dynamic``: which output sizes follow the tensor) gives a :class:`Split`."""
        head, tail = _unchanged_ends(before, after)
        if x.axis < head:
            return Chan(x.axis, x.ids, len(after))
        if x.axis >= len(before) - tail:
            return Chan(x.axis + len(after) - len(before), x.ids, len(after))
        merged, into = before[head:len(before) - tail], after[head:len(after) - tail]
        if merged == (len(x.ids),) and len(into) > 1 and math.prod(into) == len(x.ids) and dynamic is not None:
            return self._split_channel_axis(node, x, head, into, dynamic[head:head + len(into)], len(after))
        if len(into) != 1 or math.prod(merged) != into[0]:
            return self._block(x, f"{node.name} reshapes the channel axis")
        local = x.axis - head
        view = [1] * len(merged)
        view[local] = len(x.ids)
        ids = torch.tensor(x.ids).reshape(view).expand(merged).flatten()
        return Chan(head, tuple(ids.tolist()), len(after))

    def _split_channel_axis(self, node: fx.Node, x: Chan, head: int, into: tuple[int, ...],
                            dynamic: list[bool], ndim: int) -> Any:
        """The channel axis viewed as dimensions ``into``: only the one sized from the tensor may
        shrink, so the atoms at the same index along it are coupled."""
        if sum(dynamic) != 1:
            return self._block(x, f"{node.name} splits the channel axis into sizes that do not follow "
                                  "the channel count (exactly one must be computed from it or -1)")
        free = dynamic.index(True)
        ids = torch.tensor(x.ids).reshape(into)
        for j in range(into[free]):
            atoms = ids.select(free, j).flatten().tolist()
            for atom in atoms[1:]:
                self._union(atoms[0], atom)
        return Split(tuple(range(head, head + len(into))), ids, ndim)

    def _split_axes(self, node: fx.Node, x: Split, args: tuple, kwargs: dict, shape: tuple[int, ...]) -> Any:
        """transpose/permute, a copy, or the view that merges the split channel dimensions."""
        target = node.target
        if target in _PERMUTE:
            perm = _permutation(target, args, kwargs, x.ndim)
            if perm is not None:
                axes = tuple(i for i in range(x.ndim) if perm[i] in x.axes)
                return Split(axes, x.ids.permute([x.axes.index(perm[i]) for i in axes]), x.ndim)
        if target in _PASS_METHODS and len(shape) == x.ndim:
            return x
        if target in _RESHAPE and node.op != "call_module":
            before = _shape(node.args[0])
            head, tail = _unchanged_ends(before, shape)
            merged = tuple(range(head, len(before) - tail))
            if merged == x.axes and len(shape) - tail - head == 1:
                return Chan(head, tuple(x.ids.flatten().tolist()), len(shape))
        return self._block(x, f"{node.name} uses a channel axis split into several dimensions")

    def _split(self, node: fx.Node, x: Chan, args: tuple, kwargs: dict) -> Any:
        """``chunk`` into k parts, or ``split`` by a size computed from the tensor, along the
        channel axis into equal parts: channel j of every part is coupled (each keeps the same
        count). Along another axis each part keeps the channels."""
        metas = node.meta.get("tensor_meta")
        dim = kwargs.get("dim", args[2] if len(args) > 2 else 0) % x.ndim
        if not isinstance(metas, (tuple, list)):
            return self._block(x, f"{node.name} splits into parts of unknown shape")
        if dim != x.axis:
            return tuple(x for _ in metas)
        raw = node.kwargs.get("split_size_or_sections", node.args[1] if len(node.args) > 1 else None)
        if node.target in (torch.split, "split") and not isinstance(raw, fx.Node):
            return self._block(x, f"{node.name} splits the channel axis by constant sizes")
        widths = {meta.shape[x.axis] for meta in metas}
        if len(widths) != 1 or len(metas) * widths.pop() != len(x.ids):
            return self._block(x, f"{node.name} splits the channel axis into unequal parts")
        parts, width = len(metas), len(x.ids) // len(metas)
        for j in range(width):
            for a in range(1, parts):
                self._union(x.ids[j], x.ids[a * width + j])
        return tuple(Chan(x.axis, x.ids[a * width:(a + 1) * width], x.ndim) for a in range(parts))

    def _reduce(self, node: fx.Node, x: Chan, args: tuple, kwargs: dict, shape: tuple[int, ...]) -> Any:
        dims = kwargs.get("dim", args[1] if len(args) > 1 else None)
        if dims is None:
            return self._block(x, f"{node.name} reduces over the channel axis")
        dims = {d % x.ndim for d in ([dims] if isinstance(dims, int) else dims)}
        if x.axis in dims:
            return self._block(x, f"{node.name} reduces over the channel axis")
        keep = kwargs.get("keepdim", args[2] if len(args) > 2 else False)
        axis = x.axis if keep else x.axis - sum(d < x.axis for d in dims)
        return Chan(axis, x.ids, len(shape))

    def _cat(self, node: fx.Node, args: tuple, kwargs: dict, shape: tuple[int, ...]) -> Any:
        tensors = list(args[0])
        dim = kwargs.get("dim", args[1] if len(args) > 1 else 0)
        first = tensors[0]
        if not all(isinstance(t, Chan) and (t.axis, t.ndim) == (first.axis, first.ndim) for t in tensors):
            return self._block(tensors, f"{node.name}: concatenation of untracked tensors")
        if dim % first.ndim == first.axis:
            return Chan(first.axis, tuple(a for t in tensors for a in t.ids), len(shape))
        return self._elementwise(node, tensors, shape, residual=False)

    # -- groups -------------------------------------------------------------------------------
    def _collect(self) -> tuple[list[Group], dict[str, str]]:
        roots: dict[int, list[tuple[str, str, int]]] = defaultdict(list)
        blocked: dict[int, str] = {}
        residual = set()
        for atom in range(len(self._parent)):
            root = self._find(atom)
            roots[root].extend(self._slots[atom])
            if atom in self._blocked:
                blocked.setdefault(root, self._blocked[atom])
            repeated = [m for m, _, _ in self._slots[atom] if m in self._repeated]
            if repeated:
                blocked.setdefault(root, f"{repeated[0]} is called more than once")
            if atom in self._residual:
                residual.add(root)
        skipped: dict[str, str] = {}
        kinds: dict[tuple, list[int]] = defaultdict(list)
        for root, slots in roots.items():
            if root in blocked:
                for module, role, _ in slots:
                    if role == "out":
                        skipped.setdefault(module, blocked[root])
                continue
            per_key: dict[tuple[str, str], list[int]] = defaultdict(list)
            for module, role, index in slots:
                per_key[(module, role)].append(index)
            signature = tuple(sorted((key, len(v)) for key, v in per_key.items()))
            kinds[signature].append(root)
        rank = {name: i for i, name in reversed(list(enumerate(self.order)))}
        groups = []
        for signature, members in kinds.items():
            keys = [key for key, _ in signature]
            producers = sorted((m for m, role in keys if role == "out"), key=rank.get)
            if not producers:
                continue
            slices = {}
            for key in sorted(keys, key=lambda k: (rank.get(k[0], 0), k[1])):
                rows = [sorted(i for m, r, i in roots[root] if (m, r) == key) for root in members]
                slices[key] = torch.tensor(rows, dtype=torch.long)
            order = slices[(producers[0], "out")][:, 0].argsort()
            slices = {key: index[order] for key, index in slices.items()}
            groups.append(Group(producers[0], slices, any(root in residual for root in members)))
        groups.sort(key=lambda g: (rank[g.name], int(g.slices[(g.name, "out")].min())))
        return groups, {name: skipped[name] for name in sorted(skipped, key=rank.get)}
