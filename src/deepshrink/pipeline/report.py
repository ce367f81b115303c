"""The report of a model file or a ``.dsz`` file, as plain data and as text.

A model file: one row per layer with parameters, non-zeros, sparsity, weight bits (under the
current quantization) and storage bytes; optionally the cost analysis (MACs, memory traffic).
A ``.dsz`` file: the codec's byte accounting (index bits, weight bits, Huffman bits per symbol
against the entropy, bytes per layer, the real compression ratio); with ``costs``, the cost
analysis of the model decoded in memory. An ``.onnx`` file: its size on disk, the operators
of its graph and their counts, and whether it is int8 (quantize/dequantize or integer
convolution operators present).
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
from deepshrink.errors import UserError
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


# Operators that make an ONNX graph an int8 one.
INT8_OPS = ("QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger")


def is_dsz(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() == ".dsz"


def is_onnx(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() == ".onnx"


def build_report(path: str | os.PathLike, *, costs: bool = False, filters: bool = False) -> dict[str, Any]:
    """The report of ``path`` as plain data (``kind`` is ``model`` or ``dsz``). ``costs`` adds the
    cost analysis (of the decoded model for a ``.dsz`` file), ``filters`` which image filter each
    first-layer kernel resembles most. An ``.onnx`` file gives ``kind`` ``onnx`` (see
    :func:`onnx_report`); ``costs`` and ``filters`` are refused for it."""
    if is_onnx(path):
        if costs or filters:
            raise UserError(f"--{'costs' if costs else 'filters'} needs a model file or a .dsz file, "
                            f"not an .onnx file ({path})")
        return onnx_report(path)
    if is_dsz(path):
        from deepshrink.codec.dsz import read_dsz
        from deepshrink.codec.report import codec_report

        encoded = read_dsz(path)
        codec = codec_report(encoded)
        report = {"kind": "dsz", "model": encoded.info.arch.name, "dataset": encoded.info.dataset,
                  "ratio": codec.ratio, **dataclasses.asdict(codec)}
        if costs or filters:
            model, info = load_model(path)  # decoded in memory
            if costs:
                cost = model_costs(model, tuple(info.input.shape))
                report["costs"] = cost.to_dict()
                report["costs_text"] = format_costs(cost)
            if filters:
                report["filters"] = [dataclasses.asdict(match) for match in match_first_layer(model)]
        return report
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
    if report["kind"] == "onnx":
        return format_onnx_report(report)
    if report["kind"] == "dsz":
        from deepshrink.codec.report import CodecReport, format_codec_report

        text = [format_codec_report(_codec_report(report, CodecReport))]
        if "costs_text" in report:
            text += ["", "costs of the decoded model:", report["costs_text"]]
        text += _filter_lines(report)
        return "\n".join(text)
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
    text += _filter_lines(report)
    return "\n".join(text)


def _filter_lines(report: dict[str, Any]) -> list[str]:
    if "filters" not in report:
        return []
    return (["", "first-layer kernels: the closest image filter (cosine similarity)"]
            + [f"  channel {m['channel']:3d}: {m['filter']:<14} {m['similarity']:+.2f}" for m in report["filters"]])


def onnx_report(path: str | os.PathLike) -> dict[str, Any]:
    """Size on disk, operator counts (graph and subgraphs' nodes, by ``domain::op`` outside the
    default domain) and whether ``path`` is int8 (one of :data:`INT8_OPS` present). External
    data is not loaded; a file that is not an ONNX model is a :class:`UserError`."""
    try:
        import onnx
    except ImportError:
        raise UserError("reporting an .onnx file needs the onnx package (pip install 'deepshrink[export]')") from None
    path = Path(path)
    if not path.is_file():
        raise UserError(f"ONNX file not found: {path}")
    try:
        graph = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError, and others for garbage
        raise UserError(f"{path} is not an ONNX model ({type(exc).__name__}: {str(exc)[:120]})") from None
    if not graph.HasField("graph") or not graph.graph.node:
        raise UserError(f"{path} is not an ONNX model (no graph with operators)")
    counts: dict[str, int] = {}
    for node in _nodes(graph.graph):
        name = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}"
        counts[name] = counts.get(name, 0) + 1
    int8 = sorted(op for op in counts if op.split("::")[-1] in INT8_OPS)
    initializers = sum(1 for _ in graph.graph.initializer)
    opsets = {imp.domain or "ai.onnx": imp.version for imp in graph.opset_import}
    return {"kind": "onnx", "path": str(path), "bytes": path.stat().st_size, "ir_version": graph.ir_version,
            "opsets": opsets, "producer": graph.producer_name, "nodes": sum(counts.values()),
            "initializers": initializers,
            "operators": dict(sorted(counts.items(), key=lambda item: (-item[1], item[0]))),
            "int8": bool(int8), "int8_operators": int8}


def _nodes(graph):
    for node in graph.node:
        yield node
        for attribute in node.attribute:
            if attribute.HasField("g"):
                yield from _nodes(attribute.g)
            for sub in attribute.graphs:
                yield from _nodes(sub)


def format_onnx_report(report: dict[str, Any]) -> str:
    used = {"ai.onnx"} | {op.split("::")[0] for op in report["operators"] if "::" in op}
    opsets = ", ".join(f"{d} {v}" for d, v in report["opsets"].items() if d in used)  # not the unused imports
    int8 = (f"yes ({', '.join(report['int8_operators'])} present)" if report["int8"]
            else "no (no QuantizeLinear, DequantizeLinear, QLinearConv or ConvInteger)")
    width = max(len(op) for op in report["operators"])
    lines = [f"{Path(report['path']).name}: ONNX, {report['bytes']:,} bytes on disk, IR version {report['ir_version']}, "
             f"opset {opsets}" + (f", made by {report['producer']}" if report["producer"] else ""),
             f"int8: {int8}",
             f"{report['nodes']:,} operators ({len(report['operators'])} kinds), "
             f"{report['initializers']:,} initializers (weights and constants)",
             f"{'operator':<{width}}  {'count':>5}"]
    lines += [f"{op:<{width}}  {n:>5,}" for op, n in report["operators"].items()]
    return "\n".join(lines)


def _codec_report(data: dict[str, Any], cls):
    """Rebuild the codec's report object from its plain-data form."""
    from deepshrink.codec.report import LayerRow, StreamStats

    def stats(value):
        return None if value is None else StreamStats(**value)

    layers = [LayerRow(**{**row, "values": stats(row["values"]), "index": stats(row["index"])})
              for row in data["layers"]]
    names = {f.name for f in dataclasses.fields(cls)} - {"layers"}
    return cls(layers=layers, **{k: data[k] for k in names})
