"""Size accounting of an encoded model, counted in real bytes of the ``.dsz`` file.

Every byte of the file lands in exactly one place: a layer (its streams, code-length tables
and codebook), the other tensors (BatchNorm, biases, buffers), or the container's metadata
(safetensors header with its JSON, the deflated layer table and the deflated model history).
The baseline is the plain float32 safetensors file of the same architecture (its tensors and
header, without metadata).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from safetensors.torch import save as save_safetensors

from deepshrink.codec.batchnorm import statistic_keys
from deepshrink.codec.dsz import to_bytes
from deepshrink.codec.huffman import entropy_bits
from deepshrink.codec.layer import EncodedTensor, checked_values
from deepshrink.codec.model import EncodedModel
from deepshrink.codec.stream import CodedStream
from deepshrink.models import ArchSpec, build_model


@dataclass(frozen=True)
class StreamStats:
    """A Huffman stream: achieved bits per symbol and the Shannon entropy of its symbols."""

    symbols: int
    bits_per_symbol: float
    entropy: float


@dataclass(frozen=True)
class LayerRow:
    """One coded weight: ``index_bits`` is the relative-index width (0 when dense), ``weight_bits``
    the fixed-width bits of a value (ceil(log2 K) for a codebook of K entries, else 16 or 32)."""

    key: str
    layout: str
    weights: int
    nonzeros: int
    index_bits: int
    weight_bits: int
    values: StreamStats | None   # None: raw floats
    index: StreamStats | None    # None: dense
    bytes: int


@dataclass(frozen=True)
class CodecReport:
    layers: list[LayerRow]
    other_values: int            # values stored for the other tensors (BatchNorm, biases, buffers)
    other_bytes: int
    container_bytes: int         # safetensors header, metadata and the model history
    dsz_bytes: int               # the whole file
    float32_bytes: int           # the plain float32 safetensors file
    bn_affine: bool = False      # BatchNorms stored as scale and shift (no running statistics)

    @property
    def ratio(self) -> float:
        return self.float32_bytes / self.dsz_bytes


def codec_report(encoded: EncodedModel) -> CodecReport:
    """Per-layer rows and totals for ``encoded``; the sizes add up to the file size exactly."""
    rows = [_row(layer) for layer in encoded.layers]
    model = build_model(encoded.info.arch)
    plain = model.state_dict()
    not_other = {layer.key for layer in encoded.layers}
    if encoded.bn_affine:  # the running statistics are not stored
        not_other |= set(statistic_keys(model))
    dsz = len(to_bytes(encoded))
    return CodecReport(
        layers=rows,
        other_values=sum(v.numel() for k, v in plain.items() if k not in not_other),
        other_bytes=len(encoded.other),
        container_bytes=dsz - len(encoded.other) - sum(row.bytes for row in rows),
        dsz_bytes=dsz,
        float32_bytes=float32_size(encoded.info.arch),
        bn_affine=encoded.bn_affine)


def float32_size(arch: ArchSpec) -> int:
    """Bytes of the plain float32 safetensors file of ``arch``'s state dict."""
    state = {k: v.float() if v.is_floating_point() else v for k, v in build_model(arch).state_dict().items()}
    return len(save_safetensors(state))


def format_codec_report(report: CodecReport) -> str:
    """The report as a fixed-width text table with a totals line and the compression ratio."""
    lines = [f"{'layer':<28} {'layout':<6} {'weights':>9} {'nonzero':>9} {'idx b':>5} {'w b':>4} "
             f"{'val bits/sym':>13} {'idx bits/sym':>13} {'bytes':>9}"]
    for row in report.layers:
        lines.append(f"{row.key:<28} {row.layout:<6} {row.weights:>9,} {row.nonzeros:>9,} "
                     f"{row.index_bits or '-':>5} {row.weight_bits:>4} {_stats(row.values):>13} "
                     f"{_stats(row.index):>13} {row.bytes:>9,}")
    other = "other (BN affine, biases)" if report.bn_affine else "other tensors (BN, biases)"
    lines.append(f"{other:<28} {'raw':<6} {report.other_values:>9,} {'':>9} {'':>5} "
                 f"{'':>4} {'':>13} {'':>13} {report.other_bytes:>9,}")
    lines.append(f"{'container (metadata)':<28} {'':<6} {'':>9} {'':>9} {'':>5} {'':>4} {'':>13} {'':>13} "
                 f"{report.container_bytes:>9,}")
    weights = sum(r.weights for r in report.layers) + report.other_values
    nonzeros = sum(r.nonzeros for r in report.layers)
    lines.append(f"{'total':<28} {'':<6} {weights:>9,} {nonzeros:>9,} {'':>5} {'':>4} {'':>13} {'':>13} "
                 f"{report.dsz_bytes:>9,}")
    lines.append(f"float32 safetensors {report.float32_bytes:,} bytes -> .dsz {report.dsz_bytes:,} bytes: "
                 f"{report.ratio:.2f}x smaller")
    lines += LEGEND
    return "\n".join(lines)


# What the columns of :func:`format_codec_report` mean (the run report shows it too).
LEGEND = [
    "idx b: bits of the relative index between stored entries (sparse layout; '-': dense, no index)",
    "w b: fixed-width bits of a weight's code, ceil(log2 K) for a codebook of K entries: a pruned 4-bit "
    "k-means layer has 16 levels + zero = 17 entries, so 5 (32 or 16 for raw floats); Huffman coding "
    "stores fewer, see bits/sym",
    "val/idx bits/sym: Huffman bits per stored value/index, achieved/entropy (the Shannon bound); "
    "bytes: real bytes in the file (streams, code tables, codebook)",
]


def _row(layer: EncodedTensor) -> LayerRow:
    nbytes = len(layer.raw) if layer.raw is not None else 0
    values = index = None
    if layer.values is not None:
        values = _stream_stats(layer.values)
        nbytes += _stream_bytes(layer.values) + layer.codebook_bytes
        weight_bits = max(1, math.ceil(math.log2(layer.codebook.shape[1])))
    else:
        weight_bits = 8 * np.dtype(layer.dtype).itemsize
    if layer.index is not None:
        index = _stream_stats(layer.index)
        nbytes += _stream_bytes(layer.index)
    return LayerRow(layer.key, layer.layout, layer.numel, int(np.count_nonzero(checked_values(layer))),
                    layer.index_width, weight_bits, values, index, nbytes)


def _stream_stats(stream: CodedStream) -> StreamStats:
    symbols = stream.decode()
    bits = int(stream.lengths.astype(np.int64)[symbols].sum())
    return StreamStats(stream.count, bits / max(stream.count, 1), entropy_bits(symbols))


def _stream_bytes(stream: CodedStream) -> int:
    return len(stream.data) + len(stream.table_bytes())


def _stats(stats: StreamStats | None) -> str:
    return "-" if stats is None else f"{stats.bits_per_symbol:.2f}/{stats.entropy:.2f}"
