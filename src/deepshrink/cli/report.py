"""``deepshrink report``: what a model file holds, layer by layer (parameters, sparsity)."""

from __future__ import annotations

import argparse
from typing import Any

from deepshrink.analysis.sparsity import sparsity_summary
from deepshrink.cli.args import print_json
from deepshrink.models import load_model

# Table columns: (header, key in a layer row, format). Other stages add theirs here.
COLUMNS = [
    ("layer", "name", "{}"),
    ("type", "type", "{}"),
    ("params", "params", "{:,}"),
    ("non-zero", "nonzero", "{:,}"),
    ("sparsity", "sparsity", "{:.2%}"),
]


def register(sub) -> None:
    p = sub.add_parser("report", help="per-layer report of a model file", description=__doc__)
    p.add_argument("model_file", metavar="MODEL_FILE")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.set_defaults(run=run)


def build_report(path: str) -> dict[str, Any]:
    """The report of model file ``path`` as plain data: model, dataset, layers, total."""
    model, info = load_model(path)
    return {"model": info.arch.name, "dataset": info.dataset, "stages": [h.get("stage") for h in info.history],
            **sparsity_summary(model)}


def format_report(report: dict[str, Any]) -> str:
    """The report as an aligned text table with a total line."""
    total = {"name": "total", **report["total"]}
    rows = [[fmt.format(row[key]) if key in row else "" for _, key, fmt in COLUMNS]
            for row in [*report["layers"], total]]
    header = [title for title, _, _ in COLUMNS]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    stages = " -> ".join(s for s in report["stages"] if s) or "none"
    return "\n".join([f"{report['model']} ({report['dataset'] or 'no dataset'}), stages: {stages}",
                      line(header), line(["-" * w for w in widths]), *map(line, rows[:-1]),
                      line(["-" * w for w in widths]), line(rows[-1])])


def run(args: argparse.Namespace) -> int:
    report = build_report(args.model_file)
    if args.json:
        print_json(report)
    else:
        print(format_report(report))
    return 0
