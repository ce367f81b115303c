"""The report of a model file or a ``.dsz`` file, as plain data and as text.

A model file: one row per layer with parameters, non-zeros, sparsity, weight bits (under the
current quantization) and storage bytes; optionally the cost analysis (MACs, memory traffic).
A ``.dsz`` file: the codec's byte accounting (index bits, weight bits, Huffman bits per symbol
against the entropy, bytes per layer, the real compression ratio).
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Any

from deepshrink.analysis.costs import format_costs, model_costs
from deepshrink.analysis.filters import match_first_layer
from deepshrink.analysis.sparsity import sparsity_summary
from deepshrink.models import load_model

# Table columns: (header, key in a layer row, format).
COLUMNS = [
    ("layer", "name", "{}"),
    ("type", "type", "{}"),
    ("params", "params", "{:,}"),
    ("non-zero", "nonzero", "{:,}"),
    ("sparsity", "sparsity", "{:.2%}"),
    ("bits", "bits", "{:.3g}"),
    ("bytes", "bytes", "{:,}"),
]


def is_dsz(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() == ".dsz"


def build_report(path: str | os.PathLike, *, costs: bool = False, filters: bool = False) -> dict[str, Any]:
    """The report of ``path`` as plain data (``kind`` is ``model`` or ``dsz``). ``costs`` adds the
    cost analysis, ``filters`` which image filter each first-layer kernel resembles most."""
    if is_dsz(path):
        from deepshrink.codec.dsz import read_dsz
        from deepshrink.codec.report import codec_report

        encoded = read_dsz(path)
        report = codec_report(encoded)
        return {"kind": "dsz", "model": encoded.info.arch.name, "ratio": report.ratio,
                **dataclasses.asdict(report)}
    model, info = load_model(path)
    summary = sparsity_summary(model)
    cost = model_costs(model, tuple(info.input.shape))
    bits = {row.name: row.size_bits for row in cost.layers}
    for row in summary["layers"]:
        size = bits.get(row["name"], 32 * row["params"])
        row["bytes"] = math.ceil(size / 8)
        row["bits"] = size / row["params"] if row["params"] else 0.0
    total = summary["total"]
    total["bytes"] = sum(row["bytes"] for row in summary["layers"])
    total["bits"] = 8 * total["bytes"] / total["params"] if total["params"] else 0.0
    report = {"kind": "model", "model": info.arch.name, "dataset": info.dataset,
              "stages": [h.get("stage") for h in info.history], **summary}
    if costs:
        report["costs"] = cost.to_dict()
        report["costs_text"] = format_costs(cost)
    if filters:
        report["filters"] = [dataclasses.asdict(match) for match in match_first_layer(model)]
    return report


def format_report(report: dict[str, Any]) -> str:
    """The report as aligned text tables."""
    if report["kind"] == "dsz":
        from deepshrink.codec.report import CodecReport, format_codec_report

        return format_codec_report(_codec_report(report, CodecReport))
    total = {"name": "total", **report["total"]}
    rows = [[fmt.format(row[key]) if key in row else "" for _, key, fmt in COLUMNS]
            for row in [*report["layers"], total]]
    header = [title for title, _, _ in COLUMNS]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    stages = " -> ".join(s for s in report["stages"] if s) or "none"
    rule = line(["-" * w for w in widths])
    text = [f"{report['model']} ({report['dataset'] or 'no dataset'}), stages: {stages}",
            line(header), rule, *map(line, rows[:-1]), rule, line(rows[-1]),
            "bits: storage bits per parameter under the current quantization (codebook included); "
            "bytes: dense storage at those bits (`deepshrink encode` gives the real compressed size)"]
    if "costs_text" in report:
        text += ["", report["costs_text"]]
    if "filters" in report:
        text += ["", "first-layer kernels: the closest image filter (cosine similarity)"]
        text += [f"  channel {m['channel']:3d}: {m['filter']:<14} {m['similarity']:+.2f}" for m in report["filters"]]
    return "\n".join(text)


def _codec_report(data: dict[str, Any], cls):
    """Rebuild the codec's report object from its plain-data form."""
    from deepshrink.codec.report import LayerRow, StreamStats

    def stats(value):
        return None if value is None else StreamStats(**value)

    layers = [LayerRow(**{**row, "values": stats(row["values"]), "index": stats(row["index"])})
              for row in data["layers"]]
    names = {f.name for f in dataclasses.fields(cls)} - {"layers"}
    return cls(layers=layers, **{k: data[k] for k in names})
