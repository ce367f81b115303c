"""Early exits (BranchyNet, Teerapittayanon et al. 2016): classifiers after chosen stages of a
backbone, so that easy inputs can stop there instead of running the whole network.

:class:`EarlyExitModel` wraps a backbone without changing it. Each exit point is a module of
the backbone; a forward hook feeds its output (N, C, H, W) to a small head (global average
pool + Linear). ``forward`` returns the backbone's own logits and keeps each exit's logits in
``exit_logits`` (trained jointly by :class:`deepshrink.train.early_exit.EarlyExitLoss`).
:meth:`EarlyExitModel.predict_with_exits` drops the inputs that leave at an exit from the
batch, so the rest of the backbone runs only on the others.

The exit points must lie on the backbone's main path: everything after an exit point may
depend on the batch only through that point's output (true of a stage of a ResNet, not of a
module inside a residual block).

In model files the wrapper is the registered architecture ``early-exit`` (not in the zoo
list): its ``kwargs`` hold the backbone's own spec and the exit points,
``{"num_classes": 10, "in_channels": 3, "image_size": 32, "exit_points": ["layer1", "layer2"],
"backbone": {"name": "resnet20", "kwargs": {...}}}``, so ``build_model`` rebuilds it and
``load_model`` loads it like any other model. :func:`early_exit_spec` makes that spec and
:func:`add_exits` wraps an already built (trained) backbone.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from deepshrink.errors import UserError
from deepshrink.models.registry import ArchSpec, build_model, register_model

__all__ = ["CRITERIA", "EARLY_EXIT_ARCH", "EarlyExitModel", "ExitHead", "add_exits", "build_early_exit",
           "early_exit_spec", "exit_score", "leaves_at"]

CRITERIA = ("confidence", "entropy")
EARLY_EXIT_ARCH = "early-exit"  # the registry name of the wrapper in model files


class ExitHead(nn.Sequential):
    """(N, channels, H, W) -> global average pool -> Linear -> (N, num_classes)."""

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes))


def exit_score(logits: torch.Tensor, criterion: str) -> torch.Tensor:
    """Per-input score of (N, classes) logits: max softmax probability, or entropy in nats."""
    if criterion == "confidence":
        return F.softmax(logits.float(), dim=1).amax(dim=1)
    if criterion == "entropy":
        log_p = F.log_softmax(logits.float(), dim=1)
        return -(log_p.exp() * log_p).sum(dim=1)
    raise UserError(f"unknown exit criterion {criterion!r}; choose one of: {', '.join(CRITERIA)}")


def leaves_at(logits: torch.Tensor, threshold: float, criterion: str) -> torch.Tensor:
    """(N,) bool: confidence >= threshold, or entropy <= threshold."""
    score = exit_score(logits, criterion)
    return score >= threshold if criterion == "confidence" else score <= threshold


class _AllExited(Exception):
    """Raised from an exit hook to stop the backbone once every input has left."""


class _Router:
    """The state of one :meth:`EarlyExitModel.predict_with_exits` call."""

    def __init__(self, batch: int, threshold: float, criterion: str, device: torch.device) -> None:
        self.threshold, self.criterion = threshold, criterion
        self.remaining = torch.arange(batch, device=device)  # original positions still inside
        self.predictions = torch.full((batch,), -1, dtype=torch.long, device=device)
        self.exits = torch.full((batch,), -1, dtype=torch.long, device=device)

    def take(self, index: int, logits: torch.Tensor) -> torch.Tensor:
        """Inputs that leave at exit ``index`` get its prediction; returns the (N,) bool of those staying."""
        leave = leaves_at(logits, self.threshold, self.criterion)
        gone = self.remaining[leave]
        self.predictions[gone] = logits[leave].argmax(dim=1)
        self.exits[gone] = index
        self.remaining = self.remaining[~leave]
        if self.remaining.numel() == 0:
            raise _AllExited
        return ~leave


class _ExitHook:
    """The forward hook of exit ``index``. An object rather than a closure, so that
    ``copy.deepcopy`` of the wrapper gives hooks that call the copy, not the original."""

    def __init__(self, model: "EarlyExitModel", index: int) -> None:
        self.model, self.index = model, index

    def __call__(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor | None:
        return self.model._at_exit_point(self.index, output)


class EarlyExitModel(nn.Module):
    """``backbone`` with exit heads after the modules named in ``exit_points`` (in forward order).

    ``input_shape`` (C, H, W) is one input's shape: a dry run on it finds the channels of
    each exit point's output. Exit i is ``exits[i]``; index ``len(exit_points)`` means the
    backbone's own classifier.
    """

    def __init__(self, backbone: nn.Module, exit_points: Sequence[str], num_classes: int, *,
                 input_shape: Sequence[int]) -> None:
        super().__init__()
        self.backbone = backbone
        self.exit_points = list(exit_points)
        self.input_shape = tuple(int(v) for v in input_shape)
        channels = self._exit_channels()
        self.exits = nn.ModuleList(ExitHead(c, num_classes) for c in channels)
        self.exit_logits: list[torch.Tensor] = []
        self._collecting = False
        self._router: _Router | None = None
        modules = dict(backbone.named_modules())
        for index, name in enumerate(self.exit_points):
            modules[name].register_forward_hook(_ExitHook(self, index))

    def edge_layers(self) -> list[str]:
        """Layers that pruning and quantization leave alone by default: the backbone's first and
        last Conv2d/Linear (stem and classifier) and the last layer of each exit head."""
        layers = [name for name, m in self.named_modules()
                  if isinstance(m, (nn.Conv2d, nn.Linear)) and "parametrizations" not in name.split(".")]
        backbone = [name for name in layers if name.startswith("backbone.")]
        heads = [[name for name in layers if name.startswith(f"exits.{i}.")] for i in range(len(self.exits))]
        return backbone[:1] + backbone[-1:] + [head[-1] for head in heads if head]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> the backbone's logits; ``self.exit_logits`` gets each exit's (N, classes)."""
        self.exit_logits = []
        self._collecting = True
        try:
            return self.backbone(x)
        finally:
            self._collecting = False

    @torch.no_grad()
    def predict_with_exits(self, x: torch.Tensor, threshold: float,
                           criterion: str = "confidence") -> tuple[torch.Tensor, torch.Tensor]:
        """(predicted class (N,), exit taken (N,)) in eval mode: each input leaves at the first
        exit whose confidence >= ``threshold`` (or entropy <= ``threshold``), else at the end."""
        exit_score(x.new_zeros(1, 1), criterion)  # validates the criterion
        router = _Router(x.shape[0], threshold, criterion, x.device)
        was_training = self.training
        self.eval()
        self._router = router
        try:
            logits = self.backbone(x)
            router.predictions[router.remaining] = logits.argmax(dim=1)
            router.exits[router.remaining] = len(self.exits)
        except _AllExited:
            pass
        finally:
            self._router = None
            self.train(was_training)
        return router.predictions, router.exits

    def _at_exit_point(self, index: int, output: torch.Tensor) -> torch.Tensor | None:
        """What exit point ``index`` does with its module's output (called by its forward hook)."""
        if self._collecting:
            self.exit_logits.append(self.exits[index](output))
        elif self._router is not None:
            return output[self._router.take(index, self.exits[index](output))]
        return None  # the backbone called on its own

    @torch.no_grad()
    def _exit_channels(self) -> list[int]:
        """Channels of each exit point's output, from one forward pass; checks the points."""
        modules = dict(self.backbone.named_modules())
        unknown = [name for name in self.exit_points if name not in modules]
        if unknown or not self.exit_points or len(set(self.exit_points)) < len(self.exit_points):
            top = ", ".join(name for name, _ in self.backbone.named_children())
            raise UserError(f"exit points must name distinct modules of the backbone, got {self.exit_points}"
                            + (f"; unknown: {', '.join(unknown)} (its top-level modules: {top})" if unknown else ""))
        calls: list[tuple[str, torch.Size]] = []
        handles = [modules[name].register_forward_hook(
            lambda m, i, out, name=name: calls.append((name, out.shape))) for name in self.exit_points]
        device = next((p.device for p in self.backbone.parameters()), torch.device("cpu"))
        was_training = self.backbone.training
        try:
            self.backbone.eval()
            self.backbone(torch.zeros(1, *self.input_shape, device=device))
        finally:
            self.backbone.train(was_training)
            for handle in handles:
                handle.remove()
        if [name for name, _ in calls] != self.exit_points:
            raise UserError("exit points must be distinct modules, each called once per forward pass, "
                            f"listed in forward order; the forward pass called {[n for n, _ in calls]}")
        flat = [name for name, shape in calls if len(shape) != 4]
        if flat:
            raise UserError(f"exit points need (N, C, H, W) feature maps; {', '.join(flat)} is not one")
        return [shape[1] for _, shape in calls]

    def extra_repr(self) -> str:
        return f"exit_points={self.exit_points}"


def early_exit_spec(backbone: ArchSpec, exit_points: Sequence[str]) -> ArchSpec:
    """The ``early-exit`` spec of ``backbone`` (a zoo spec with ``num_classes``, ``in_channels``
    and ``image_size``) with heads after ``exit_points``; checked when it is built."""
    if backbone.name == EARLY_EXIT_ARCH:
        raise UserError("this model already has early exits")
    missing = [k for k in ("num_classes", "in_channels", "image_size") if k not in backbone.kwargs]
    if missing:
        raise UserError(f"early exits need the backbone's {', '.join(missing)} in its architecture spec")
    kwargs = {k: int(backbone.kwargs[k]) for k in ("num_classes", "in_channels", "image_size")}
    spec = ArchSpec(EARLY_EXIT_ARCH, {**kwargs, "exit_points": [str(p) for p in exit_points],
                                      "backbone": backbone.to_dict()})
    json.dumps(spec.to_dict())  # must be plain data
    return spec


def add_exits(backbone: nn.Module, spec: ArchSpec, exit_points: Sequence[str]) -> tuple[EarlyExitModel, ArchSpec]:
    """Wrap an already built ``backbone`` (e.g. a trained one) described by ``spec``; returns the
    wrapper, with freshly initialised heads, and its ``early-exit`` spec."""
    exit_spec = early_exit_spec(spec, exit_points)
    kw = exit_spec.kwargs
    model = EarlyExitModel(backbone, kw["exit_points"], kw["num_classes"],
                           input_shape=(kw["in_channels"], kw["image_size"], kw["image_size"]))
    return model, exit_spec


@register_model(EARLY_EXIT_ARCH, description="a zoo backbone with early-exit heads (see early_exit_spec)",
                default_input=(3, 32, 32), zoo=False)
def build_early_exit(num_classes: int, in_channels: int, image_size: int, exit_points: list[str],
                     backbone: dict[str, Any], allow_builders: tuple[str, ...] = ()) -> EarlyExitModel:
    """The wrapper of ``early_exit_spec``: builds ``backbone`` (a spec as a dict; a builder only
    from the caller's ``allow_builders`` packages) and adds the heads."""
    spec = ArchSpec.from_dict(backbone)
    if spec.name == EARLY_EXIT_ARCH:
        raise UserError("an early-exit backbone cannot itself be an early-exit model")
    declared = {"num_classes": num_classes, "in_channels": in_channels, "image_size": image_size}
    differ = [f"{k} {v} vs {spec.kwargs.get(k)}" for k, v in declared.items() if spec.kwargs.get(k) != v]
    if differ:
        raise UserError(f"the early-exit spec and its backbone disagree: {'; '.join(differ)}")
    if not isinstance(exit_points, list) or not all(isinstance(p, str) for p in exit_points):
        raise UserError(f"exit_points must be a list of module names, got {exit_points!r}")
    return EarlyExitModel(build_model(spec, allow_builders), exit_points, num_classes,
                          input_shape=(in_channels, image_size, image_size))
