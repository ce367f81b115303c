"""Structured-pruning coverage matrix: deepshrink against Torch-Pruning on the same models, in
the same run (issue 23, item 3).

For every model of ``coverage_models.CORPUS``:

- deepshrink: ``plan_channels`` for a 40 % MAC reduction (``ratio=0.3`` when that target is out
  of reach), the planned channels zeroed in the dense model, its output recorded, then
  ``prune_channels`` with that plan; the pruned model's output must match (max abs diff shown).
- Torch-Pruning: ``MagnitudePruner`` (L1) with the classifier ignored; its global
  ``pruning_ratio`` is scanned (on copies, steps of 0.025) for the smallest ratio that reaches
  the same MAC target (``0.3`` when no ratio up to 0.9 does). Torch-Pruning exposes no plan to zero first, so
  its outputs are not checked against the dense model; only that the forward runs with the
  right output shape.

MACs are counted by ``deepshrink.analysis.costs.model_costs`` for both.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/coverage_matrix.py [--only NAME ...] [--no-tp]
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from coverage_models import CORPUS  # noqa: E402

from deepshrink.analysis.costs import model_costs  # noqa: E402
from deepshrink.errors import UserError  # noqa: E402
from deepshrink.prune.structured import StructuredConfig, plan_channels, prune_channels, zero_channels  # noqa: E402

TARGET = 0.4
FALLBACK_RATIO = 0.3
TOLERANCE = 1e-4


@dataclass
class Row:
    handled: bool
    setting: str = ""
    macs_reduction: float | None = None
    max_diff: float | None = None  # None: not checked
    forward: bool = False
    error: str = ""
    seconds: float = 0.0

    @property
    def outputs_ok(self) -> bool | None:
        return None if self.max_diff is None else self.max_diff <= TOLERANCE


def one_line(exc: BaseException) -> str:
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= 160 else text[:157] + "..."


def macs(model: nn.Module, shape) -> int:
    return model_costs(model, shape).totals["macs"]


def run_deepshrink(factory, shape, classifier: str, target: float = TARGET) -> Row:
    start = time.perf_counter()
    row = Row(handled=False)
    try:
        model = factory()
        dense = macs(model, shape)
        torch.manual_seed(1)
        x = torch.randn(2, *shape)
        settings = StructuredConfig(target_macs_reduction=target)
        row.setting = f"target {target:.0%}"
        try:
            plan = plan_channels(model, shape, settings)
        except UserError as exc:
            if "out of reach" not in str(exc):
                raise
            settings = StructuredConfig(ratio=FALLBACK_RATIO)
            row.setting = f"ratio {FALLBACK_RATIO} (target out of reach)"
            plan = plan_channels(model, shape, settings)
        zero_channels(model, plan.removed)
        with torch.no_grad():
            before = model(x)
        prune_channels(model, x, settings, plan=plan)
        with torch.no_grad():
            after = model(x)
        row.forward = after.shape == before.shape
        row.max_diff = float((after - before).abs().max())
        row.macs_reduction = 1.0 - macs(model, shape) / dense
        row.handled = row.forward and row.outputs_ok and row.macs_reduction > 0
        if not row.handled and not row.error:
            row.error = "pruned model differs from the zeroed dense model" if row.forward else "output shape changed"
    except Exception as exc:  # noqa: BLE001 - every failure is a finding
        row.error = one_line(exc)
    row.seconds = time.perf_counter() - start
    return row


def _tp_prune(tp, model: nn.Module, shape, classifier: str, ratio: float) -> nn.Module:
    example = torch.randn(1, *shape)
    pruner = tp.pruner.MagnitudePruner(model, example, importance=tp.importance.MagnitudeImportance(p=1),
                                       pruning_ratio=ratio, ignored_layers=[model.get_submodule(classifier)])
    pruner.step()
    return model


def run_torch_pruning(factory, shape, classifier: str, target: float = TARGET) -> Row:
    start = time.perf_counter()
    row = Row(handled=False)
    try:
        import torch_pruning as tp
    except ImportError as exc:
        row.error = one_line(exc)
        return row
    try:
        dense_model = factory()
        dense = macs(dense_model, shape)
        torch.manual_seed(1)
        x = torch.randn(2, *shape)
        with torch.no_grad():
            expected_shape = dense_model(x).shape

        def reduction(ratio: float) -> float:
            model = _tp_prune(tp, copy.deepcopy(dense_model), shape, classifier, ratio)
            return 1.0 - macs(model, shape) / dense

        # a scan, not a bisection: Torch-Pruning's MACs are not monotone in the ratio (grouped
        # conv: ratio 0.7 removes 92 % of the MACs, 0.9 only 19 %)
        ratio = next((r / 40 for r in range(1, 37) if reduction(r / 40) >= target), None)
        if ratio is None:
            ratio, row.setting = FALLBACK_RATIO, f"ratio {FALLBACK_RATIO} (target out of reach)"
        else:
            row.setting = f"ratio {ratio:.3f}"
        model = _tp_prune(tp, copy.deepcopy(dense_model), shape, classifier, ratio)
        row.macs_reduction = 1.0 - macs(model, shape) / dense
        with torch.no_grad():
            out = model(x)
        row.forward = out.shape == expected_shape and bool(torch.isfinite(out).all())
        row.handled = row.forward and row.macs_reduction > 0
        if not row.handled:
            row.error = "output shape changed" if not row.forward else "nothing pruned"
    except Exception as exc:  # noqa: BLE001
        row.error = one_line(exc)
    row.seconds = time.perf_counter() - start
    return row


def cell_ok(row: Row) -> str:
    return "yes" if row.handled else "**no**"


def fmt_macs(row: Row) -> str:
    return "–" if row.macs_reduction is None else f"{row.macs_reduction:.1%} ({row.setting})"


def fmt_diff(row: Row) -> str:
    return "–" if row.max_diff is None else f"{row.max_diff:.1e} ({'ok' if row.outputs_ok else '**wrong**'})"


def table(rows: dict[str, tuple[Row, Row | None]]) -> str:
    lines = ["| model | deepshrink handled | deepshrink MACs −, setting | deepshrink max abs diff vs zeroed | "
             "deepshrink forward | Torch-Pruning handled | Torch-Pruning MACs −, setting | Torch-Pruning forward |",
             "|---|---|---|---|---|---|---|---|"]
    notes = []
    for name, (ours, theirs) in rows.items():
        tp_cells = ["not run"] * 3 if theirs is None else [cell_ok(theirs), fmt_macs(theirs),
                                                            "yes" if theirs.forward else "**no**"]
        lines.append(f"| {name} | {cell_ok(ours)} | {fmt_macs(ours)} | {fmt_diff(ours)} | "
                     f"{'yes' if ours.forward else '**no**'} | " + " | ".join(tp_cells) + " |")
        if ours.error:
            notes.append(f"- {name}, deepshrink: `{ours.error}`")
        if theirs is not None and theirs.error:
            notes.append(f"- {name}, Torch-Pruning: `{theirs.error}`")
    out = "\n".join(lines)
    if notes:
        out += "\n\nFailures (one line each):\n\n" + "\n".join(notes)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="model names (substring match)")
    parser.add_argument("--no-tp", action="store_true", help="skip Torch-Pruning")
    parser.add_argument("--traceback", action="store_true", help="print deepshrink tracebacks")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows: dict[str, tuple[Row, Row | None]] = {}
    for name, (factory, shape, classifier) in CORPUS.items():
        if args.only and not any(o in name for o in args.only):
            continue
        ours = run_deepshrink(factory, shape, classifier)
        theirs = None if args.no_tp else run_torch_pruning(factory, shape, classifier)
        rows[name] = (ours, theirs)
        print(f"{name}: deepshrink {'ok' if ours.handled else 'FAIL'} ({ours.seconds:.1f}s)"
              + ("" if theirs is None else f", Torch-Pruning {'ok' if theirs.handled else 'FAIL'} ({theirs.seconds:.1f}s)"),
              file=sys.stderr, flush=True)
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
