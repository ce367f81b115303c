"""The early-exit sweep job: accuracy against average MACs per image of an early-exit model file,
over a range of exit thresholds, on the test split of a dataset (text, JSON and a PNG plot).

An early-exit model file comes from ``deepshrink train --early-exits ...``
(:func:`deepshrink.pipeline.train.train_job` with ``early_exits``).
"""

from __future__ import annotations

import os
from typing import Any, Sequence

from torch.nn.utils import parametrize

from deepshrink.analysis.early_exit import (backbone_macs, check_thresholds, collect_exit_logits, default_thresholds,
                                            exit_macs, plot_sweep, sweep_logits)
from deepshrink.data import BatchLoader, ImageDataset
from deepshrink.errors import UserError
from deepshrink.models import load_model
from deepshrink.models.early_exit import EarlyExitModel
from deepshrink.pipeline.datasets import check_fits
from deepshrink.train import resolve_device

__all__ = ["early_exit_sweep", "format_sweep"]


def early_exit_sweep(path: str | os.PathLike, dataset: ImageDataset, *, rule: str = "confidence",
                     thresholds: Sequence[float] | None = None, batch_size: int = 500, device: str = "auto",
                     plot: str | os.PathLike | None = None) -> dict[str, Any]:
    """Sweep the exit threshold of the early-exit model file ``path`` over ``dataset``, as plain data.

    ``rule``: ``confidence`` (leave when the max softmax probability >= threshold, thresholds in
    [0, 1]) or ``entropy`` (leave when the entropy <= threshold, in [0, ln classes] nats);
    ``thresholds`` default to :func:`~deepshrink.analysis.early_exit.default_thresholds`.
    Returns ``model`` (the backbone's name), ``dataset``, ``examples``, ``rule``, ``exits``
    (exit point names, then ``final``), ``exit_macs`` (MACs of one image leaving at each),
    ``full_macs`` and ``full_accuracy`` (the backbone alone, without exits) and ``points``:
    per threshold ``accuracy`` (0..1), ``avg_macs`` (per image), ``macs_ratio``
    (avg_macs / full_macs) and ``exit_fractions`` (share of images leaving at each exit).
    ``plot`` writes a PNG of accuracy against MACs there.
    """
    model, info = load_model(path)
    if not isinstance(model, EarlyExitModel):
        raise UserError(f"{path} has no early exits ({info.arch.name}); "
                        "add them with `deepshrink train --early-exits POINT ...`")
    check_fits(info, dataset)
    classes = int(info.arch.kwargs["num_classes"])
    thresholds = list(default_thresholds(rule, classes) if thresholds is None else thresholds)
    check_thresholds(thresholds, rule, classes)
    target = resolve_device(device)
    model.to(target)
    loader = BatchLoader(dataset, batch_size, mean=info.input.mean, std=info.input.std, device=target)
    with parametrize.cached():
        logits, labels = collect_exit_logits(model, loader, target)
    macs = exit_macs(model)
    full_macs = backbone_macs(model)
    full_accuracy = float((logits[:, -1].argmax(dim=1) == labels).double().mean()) if len(labels) else 0.0
    points = sweep_logits(logits, labels, macs, thresholds, rule)
    if plot is not None:
        plot_sweep(points, plot, full_macs=full_macs, full_accuracy=full_accuracy, criterion=rule)
    return {
        "model": info.arch.kwargs["backbone"]["name"], "dataset": dataset.name, "examples": len(labels),
        "rule": rule, "exits": [*model.exit_points, "final"], "exit_macs": macs,
        "full_macs": full_macs, "full_accuracy": full_accuracy,
        "points": [{"threshold": p.threshold, "accuracy": p.accuracy, "avg_macs": p.avg_macs,
                    "macs_ratio": p.avg_macs / full_macs if full_macs else float("nan"),
                    "exit_fractions": p.exit_fractions} for p in points],
    }


def format_sweep(result: dict[str, Any]) -> str:
    """The sweep as an aligned text table, one row per threshold."""
    comparison = ">=" if result["rule"] == "confidence" else "<="
    header = ["threshold", "top-1", "MACs/image", "vs full", *(f"@{name}" for name in result["exits"])]
    rows = [[f"{p['threshold']:g}", f"{100 * p['accuracy']:.2f}%", f"{p['avg_macs']:,.0f}",
             f"{100 * p['macs_ratio']:.1f}%", *(f"{100 * f:.1f}%" for f in p["exit_fractions"])]
            for p in result["points"]]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) for c, w in zip(cells, widths))

    return "\n".join([
        f"{result['model']} with early exits on {result['dataset']} test ({result['examples']} images): "
        f"an image leaves at the first exit whose {result['rule']} {comparison} threshold",
        f"without exits: top-1 {100 * result['full_accuracy']:.2f}%, {result['full_macs']:,} MACs/image",
        line(header), line(["-" * w for w in widths]), *map(line, rows),
        "@exit: share of images leaving there (@final: the backbone's own classifier); "
        "vs full: MACs against the model without exits",
    ])
