"""The report of a run folder: ``report.md`` and ``report.html`` with PNG plots beside them.

Built from the folder alone (the ``stage.json`` records, the model files, the ``.dsz`` and
the training metrics), so it can be rebuilt at any time: the stage table (accuracy, bytes,
ratio, latency after each stage), the per-layer table (from the codec report when an encode
stage ran, else the sparsity of the last model file), and the plots: accuracy of the
deliverables (dense model, smaller structured model, ``.dsz``, exports) against their bytes on
disk, per-layer sparsity, weight histograms before and after quantization, training curves.
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from deepshrink.analysis.costs import model_costs  # noqa: E402
from deepshrink.analysis.sparsity import layer_sparsity  # noqa: E402
from deepshrink.codec import codec_report, read_dsz  # noqa: E402
from deepshrink.files import atomic_path, atomic_write_text  # noqa: E402
from deepshrink.models import load_model, read_info  # noqa: E402
from deepshrink.pipeline.run_folder import METRICS_FILE, StageRecord, read_records  # noqa: E402
from deepshrink.quant import quantizers_of  # noqa: E402

REPORT_MD = "report.md"
REPORT_HTML = "report.html"
LAYER_TYPES = ("Conv2d", "Linear")


def write_run_report(out: str | os.PathLike, *, title: str = "deepshrink run", allow_builders=()) -> Path:
    """Write ``out/report.md``, ``out/report.html`` and the plots; returns the Markdown path.
    ``allow_builders``: the packages whose builders the run's model files may name."""
    out = Path(out)
    records = read_records(out)
    macs = stage_macs(out, records, allow_builders)
    blocks: list[tuple] = [("h1", title), ("p", _dataset_line(out, records))]
    blocks += change_blocks(records, macs)
    blocks += [("h2", "Stages"), stage_table(records, macs),
               ("p", "Size: real bytes on disk of each stage's artefact (the masked or quantized "
                     "model file, the .dsz, the export); ratio: the float32 safetensors of the "
                     "starting model over that size. MACs: multiply-accumulates per input of the "
                     "evaluated model, in brackets those with a non-zero weight (what a sparse kernel "
                     "would do). Latency: batch 1, median of 10 passes, one thread unless the recipe "
                     "sets threads.")]
    blocks += _layer_blocks(out, records, allow_builders)
    blocks.append(("h2", "Plots"))
    for name, draw in (("accuracy_vs_ratio.png", _plot_accuracy_ratio), ("sparsity.png", _plot_sparsity),
                       ("weights.png", _plot_weights), ("training.png", _plot_training)):
        figure = draw(out, records, allow_builders)
        if figure is not None:
            _save_figure(figure, out / name)
            blocks.append(("img", name))
    atomic_write_text(out / REPORT_HTML, to_html(blocks, title))
    atomic_write_text(out / REPORT_MD, to_markdown(blocks))
    return out / REPORT_MD


def stage_table(records: list[StageRecord], macs: dict[str, tuple[int, int]] | None = None) -> tuple:
    """The stage table; with ``macs`` (:func:`stage_macs`) a MACs column after the ratio."""
    rows = [[r.folder, f"{100 * r.top1:.2f}%", f"{r.bytes:,}", f"{r.ratio:.2f}x",
             *([_macs(macs.get(r.folder))] if macs is not None else []),
             f"{r.latency_ms:.3f}", f"{r.seconds:.1f}", _notes(r)] for r in records]
    headers = ["stage", "top-1", "bytes", "ratio", *(["MACs (non-zero)"] if macs is not None else []),
               "latency ms", "seconds", "notes"]
    return ("table", headers, rows)


def _macs(value: tuple[int, int] | None) -> str:
    return "" if value is None else f"{value[0]:,} ({value[1]:,})"


def stage_macs(out: Path, records: list[StageRecord], allow_builders=()) -> dict[str, tuple[int, int]]:
    """(MACs, MACs with a non-zero weight) per input of each stage's evaluated model, by stage
    folder; a stage whose evaluated file is not a model file (an export) takes those of the
    last model before it."""
    result: dict[str, tuple[int, int]] = {}
    last = None
    for record in records:
        if record.evaluated.endswith(".safetensors"):
            model, info = load_model(out / record.evaluated, allow_builders=allow_builders)
            if info.input is not None:
                cost = model_costs(model, tuple(info.input.shape))
                last = (cost.totals["macs"], cost.totals["sparse_macs"])
        if last is not None:
            result[record.folder] = last
    return result


def _dataset_line(out: Path, records: list[StageRecord]) -> str:
    models = [r.model for r in records if r.model and r.model.endswith(".safetensors")]
    info = read_info(out / models[0]) if models else None
    if info is None:
        return "Dataset: unknown (no model file in the run)."
    shape = "x".join(map(str, info.input.shape)) if info.input is not None else "?"
    classes = f", {len(info.classes)} classes" if info.classes else ""
    return (f"Dataset: {info.dataset or 'not recorded'} (inputs {shape}{classes}); top-1 is measured on "
            f"its test split. Model: {info.arch.name if info.arch is not None else 'custom'}.")


def change_blocks(records: list[StageRecord], macs: dict[str, tuple[int, int]]) -> list[tuple]:
    """A table of the last deliverable against the dense reference (the starting model: the
    trained or imported one): top-1, bytes on disk, MACs, non-zero MACs, latency."""
    dense, points = deliverables(records)
    final = points[-1] if len(points) > 1 else (records[-1] if records else None)
    if dense is None or final is None or final is dense:
        return []

    def ratio(before: float, after: float, fewer: str) -> str:
        if not before or not after or before == after:
            return "same" if before == after else ""
        return f"{before / after:.2f}x {fewer}" if after < before else f"{after / before:.2f}x more"

    rows = [["test top-1", f"{100 * dense.top1:.2f}%", f"{100 * final.top1:.2f}%",
             f"{100 * (final.top1 - dense.top1):+.2f} points"],
            ["bytes on disk", f"{dense.bytes:,}", f"{final.bytes:,}", ratio(dense.bytes, final.bytes, "smaller")]]
    start, end = macs.get(dense.folder), macs.get(final.folder)
    if start is not None and end is not None:
        rows += [["MACs", f"{start[0]:,}", f"{end[0]:,}", ratio(start[0], end[0], "fewer")],
                 ["MACs with a non-zero weight", f"{start[1]:,}", f"{end[1]:,}", ratio(start[1], end[1], "fewer")]]
    rows.append(["latency ms (batch 1)", f"{dense.latency_ms:.3f}", f"{final.latency_ms:.3f}",
                 f"{final.latency_ms - dense.latency_ms:+.3f} ms"])
    return [("h2", "Against the starting model"),
            ("table", ["", f"start: {dense.folder}", f"final: {final.folder}", "change"], rows)]


def format_stage_table(records: list[StageRecord]) -> str:
    """The stage table as fixed-width text."""
    _, headers, rows = stage_table(records)
    left = (0, len(headers) - 1)
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) if i in left else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths)))]
    lines += ["  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
              for row in rows]
    return "\n".join(line.rstrip() for line in lines)


def _notes(record: StageRecord) -> str:
    details = record.details
    if "sparsity" in details:
        return f"sparsity {100 * details['sparsity']:.1f}%"
    if "identical_outputs" in details:
        return "decoded outputs bit-identical" if details["identical_outputs"] else "decoded outputs differ"
    if "macs_after" in details:
        return f"MACs {details['macs_before']:,} -> {details['macs_after']:,}"
    return ", ".join(f"{k}={v}" for k, v in record.options.items() if not isinstance(v, (dict, list, tuple)))


def _layer_blocks(out: Path, records: list[StageRecord], allow_builders=()) -> list[tuple]:
    encoded = [r for r in records if r.artefact.endswith(".dsz")]
    if encoded:
        report = codec_report(read_dsz(out / encoded[-1].artefact, allow_builders=allow_builders))
        rows = [[row.key, row.layout, f"{row.weights:,}", f"{row.nonzeros:,}", str(row.index_bits or "-"),
                 str(row.weight_bits), _bits(row.values), _bits(row.index), f"{row.bytes:,}"] for row in report.layers]
        rows.append(["other tensors (BatchNorm, biases)", "raw", f"{report.other_values:,}", "", "", "", "", "",
                     f"{report.other_bytes:,}"])
        rows.append(["container (metadata)", "", "", "", "", "", "", "", f"{report.container_bytes:,}"])
        rows.append(["total", "", "", "", "", "", "", "", f"{report.dsz_bytes:,}"])
        return [("h2", f"Layers of {encoded[-1].artefact}"),
                ("table", ["tensor", "layout", "weights", "non-zeros", "index bits", "weight bits",
                           "value bits/symbol (entropy)", "index bits/symbol (entropy)", "bytes"], rows),
                ("p", f"float32 safetensors {report.float32_bytes:,} bytes -> .dsz {report.dsz_bytes:,} bytes: "
                      f"{report.ratio:.2f}x smaller, every byte counted."),
                ("p", "Index bits: width of the relative index between stored entries (sparse layout; '-': "
                      "dense). Weight bits: fixed-width bits of a weight's code, ceil(log2 K) for a codebook "
                      "of K entries; a pruned 4-bit k-means layer has 16 levels + zero = 17 entries, hence 5 "
                      "(32 or 16 for raw floats). Bits/symbol: what the Huffman code achieves per stored value "
                      "or index, the Shannon entropy in brackets. Bytes: real bytes in the file.")]
    last = _last_model_record(records)
    if last is None:
        return []
    rows = [[r.name, r.type, f"{r.params:,}", f"{r.nonzero:,}", f"{100 * r.sparsity:.1f}%"]
            for r in layer_sparsity(load_model(out / last.evaluated, allow_builders=allow_builders)[0])
            if r.type in LAYER_TYPES]
    return [("h2", f"Layers of {last.evaluated}"),
            ("table", ["layer", "type", "params", "non-zeros", "sparsity"], rows)]


def _bits(stats) -> str:
    return "-" if stats is None else f"{stats.bits_per_symbol:.2f} ({stats.entropy:.2f})"


def _last_model_record(records: list[StageRecord]) -> StageRecord | None:
    models = [r for r in records if r.evaluated.endswith(".safetensors")]
    return models[-1] if models else None


# --- plots: each returns a figure, or None when the run has nothing to show ----------------------

COMPRESSING_KINDS = ("prune", "structured", "quantize")
DELIVERABLE_KINDS = ("structured", "encode", "export")  # files to ship: a smaller dense model, .dsz, exports


def deliverables(records: list[StageRecord]) -> tuple[StageRecord | None, list[StageRecord]]:
    """(dense reference, deliverables). The dense reference is the last stage before the first
    compressing one (the trained or imported model, not an untrained one that training
    follows); deliverables are the dense reference and the stages whose artefact is a file to
    ship (structured pruning's smaller dense model, the ``.dsz``, exports), not the masked or
    quantized training files, which keep float weights and are larger than the dense model."""
    first = next((i for i, r in enumerate(records) if r.kind in COMPRESSING_KINDS), len(records))
    dense = records[first - 1] if first > 0 else None
    shipped = [r for r in records[first:] if r.kind in DELIVERABLE_KINDS]
    return dense, ([dense] if dense is not None else []) + shipped


def _plot_accuracy_ratio(out: Path, records: list[StageRecord], allow_builders=()):
    dense, points = deliverables(records)
    if not points:
        return None
    figure, axes = plt.subplots(figsize=(6, 4))
    axes.plot([r.bytes for r in points], [100 * r.top1 for r in points], "o", linestyle="none")
    for r in points:
        axes.annotate(f"{r.folder}\n{r.ratio:.2f}x", (r.bytes, 100 * r.top1), textcoords="offset points",
                      xytext=(5, -4), fontsize=8, va="top")
    if dense is not None:
        axes.axhline(100 * dense.top1, color="grey", linestyle="--", linewidth=1,
                     label=f"dense {100 * dense.top1:.2f}%")
        axes.legend(fontsize=8, loc="lower right")
    axes.set_ylim(*_zoomed([100 * r.top1 for r in points]))
    axes.set_xlim(min(r.bytes for r in points) / 2, max(r.bytes for r in points) * 2)
    axes.set(xscale="log", xlabel="bytes on disk (log scale)", ylabel="test top-1 (%)",
             title="deliverables: accuracy against size")
    axes.grid(alpha=0.3)
    return figure


def _zoomed(values: list[float], pad: float = 0.25, least: float = 1.0) -> tuple[float, float]:
    """Axis limits around ``values`` with ``pad`` of their span (at least ``least``) on each side."""
    low, high = min(values), max(values)
    margin = max(least, pad * (high - low))
    return max(0.0, low - margin), min(100.0, high + margin)


def _plot_sparsity(out: Path, records: list[StageRecord], allow_builders=()):
    last = _last_model_record(records)
    if last is None:
        return None
    model = load_model(out / last.evaluated, allow_builders=allow_builders)[0]
    rows = [r for r in layer_sparsity(model) if r.type in LAYER_TYPES]
    figure, axes = plt.subplots(figsize=(max(6, 0.35 * len(rows)), 4))
    bars = axes.bar(range(len(rows)), [100 * r.sparsity for r in rows])
    axes.bar_label(bars, fmt="%.0f", fontsize=7, padding=1)
    axes.set_xticks(range(len(rows)), [r.name for r in rows], rotation=90, fontsize=7)
    axes.set(ylabel="zeros (%)", ylim=(0, 105), title=f"per-layer sparsity ({last.evaluated})")
    return figure


def _plot_weights(out: Path, records: list[StageRecord], allow_builders=()):
    index = next((i for i, r in enumerate(records) if r.kind == "quantize"), None)
    if index is None or index == 0:
        return None
    after, _ = load_model(out / records[index].model, allow_builders=allow_builders)
    before, _ = load_model(out / records[index - 1].model, allow_builders=allow_builders)
    names = list(quantizers_of(after))
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharex=True)
    for ax, model, label in ((axes[0], before, "before quantization"), (axes[1], after, "after quantization")):
        values = _nonzero_weights(model, names)
        ax.hist(values.numpy(), bins=200)
        ax.set(title=f"{label} ({values.numel():,} non-zero weights)", xlabel="weight", yscale="log")
    figure.suptitle(f"non-zero weights of all {len(names)} quantized layers pooled in one histogram "
                    "(each layer has its own levels)", fontsize=9)
    return figure


@torch.no_grad()
def _nonzero_weights(model: torch.nn.Module, names: list[str]) -> torch.Tensor:
    modules = dict(model.named_modules())
    weights = torch.cat([modules[name].weight.detach().flatten() for name in names])
    return weights[weights != 0]


def _plot_training(out: Path, records: list[StageRecord], allow_builders=()):
    runs = [(r.folder, _metrics(out / r.folder)) for r in records]
    runs = [(name, rows) for name, rows in runs if rows]
    if not runs:
        return None
    figure, (loss_axes, top1_axes) = plt.subplots(1, 2, figsize=(10, 3.5))
    offset = 0
    for name, rows in runs:
        epochs = [offset + row["epoch"] for row in rows]
        loss_axes.plot(epochs, [row["train_loss"] for row in rows], label=name)
        tested = [(e, row["test_top1"]) for e, row in zip(epochs, rows) if row.get("test_top1") is not None]
        top1_axes.plot([e for e, _ in tested], [100 * t for _, t in tested], label=name)
        offset = epochs[-1]
    loss_axes.set(xlabel="epoch (cumulative)", ylabel="training loss", yscale="log", title="training loss")
    top1_axes.set(xlabel="epoch (cumulative)", ylabel="test top-1 (%)", title="test accuracy")
    top1_axes.legend(fontsize=7)
    return figure


def _metrics(folder: Path) -> list[dict[str, Any]]:
    rows = []
    for path in sorted(folder.rglob(METRICS_FILE)):
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if "epoch" in row and "train_loss" in row:
                rows.append(row)
    return rows


def _save_figure(figure, path: Path) -> None:
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    plt.close(figure)


# --- rendering ------------------------------------------------------------------------------------

def to_markdown(blocks: list[tuple]) -> str:
    parts = []
    for kind, *body in blocks:
        if kind in ("h1", "h2"):
            parts.append(f"{'#' * int(kind[1])} {body[0]}")
        elif kind == "p":
            parts.append(body[0])
        elif kind == "img":
            parts.append(f"![{body[0]}]({body[0]})")
        else:
            headers, rows = body
            lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
            lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
            parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def to_html(blocks: list[tuple], title: str) -> str:
    e = html.escape
    parts = [f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{e(title)}</title>"
             "<style>body{font-family:sans-serif;max-width:70em;margin:auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}td:first-child{text-align:left}"
             "</style></head><body>"]
    for kind, *body in blocks:
        if kind in ("h1", "h2", "p"):
            parts.append(f"<{kind}>{e(body[0])}</{kind}>")
        elif kind == "img":
            parts.append(f"<p><img src=\"{e(body[0])}\" alt=\"{e(body[0])}\"></p>")
        else:
            headers, rows = body
            head = "".join(f"<th>{e(h)}</th>" for h in headers)
            cells = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in rows)
            parts.append(f"<table><tr>{head}</tr>{cells}</table>")
    return "\n".join(parts) + "\n</body></html>\n"
