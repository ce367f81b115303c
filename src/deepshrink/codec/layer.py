"""Encoding of one tensor: the cheapest exact representation among dense and sparse layouts.

A *quantized* weight is a codebook (G, K) (float32, or float16 to halve it) plus codebook
indices of the weight's shape (G = 1, or G = shape[0] with row g serving weight[g]); its values
are ``codebook[g, index]`` and entries that are exactly 0.0 are the pruned ones. A codebook that
is exactly a linear grid (:mod:`deepshrink.codec.grid`) is stored as its scales and zero
offsets. Candidates, the smallest in bytes wins:

- dense: one Huffman-coded codebook index per weight (zeros use an all-zero codebook column,
  appended when the codebook has none);
- sparse at each index width b: Huffman-coded relative indices (:mod:`deepshrink.codec.sparse`)
  plus one Huffman-coded codebook index per entry (fillers take the zero column);
- the exact float32 values (the fallback for a codebook too large to pay off).

A *float* tensor is stored as float16 or float32 values, dense or sparse (relative indices).
Decoding reproduces the values bit-exactly, except that zeros come back as +0.0, and float16
storage rounds. Every size here is in bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from deepshrink.codec import sparse
from deepshrink.codec.grid import Grid, detect_grid
from deepshrink.codec.stream import MAX_ALPHABET, CodedStream, coded_size
from deepshrink.errors import UserError

FLOAT_DTYPES = ("float16", "float32")


@dataclass(frozen=True)
class EncodedTensor:
    """One stored tensor. Exactly one of ``values`` (quantized) and ``raw`` (float) is set."""

    key: str
    shape: tuple[int, ...]
    values: CodedStream | None = None     # Huffman-coded codebook indices, one per entry
    codebook: np.ndarray | None = None    # (G, K), in its storage dtype: float32 or float16
    grid: Grid | None = None              # set when ``codebook`` is stored as this grid (float32 then)
    raw: bytes | None = None              # float values, one per entry, little-endian ``dtype``
    dtype: str = "float32"                # storage type of ``raw``
    index: CodedStream | None = None      # sparse layout: Huffman-coded skips, one per entry
    index_width: int = 0                  # sparse layout: bits of a skip

    @property
    def layout(self) -> str:
        return "sparse" if self.index is not None else "dense"

    @property
    def codebook_bytes(self) -> int:
        """Stored bytes of the codebook: its entries, or the grid's scales and offsets."""
        if self.codebook is None:
            return 0
        return self.grid.nbytes if self.grid is not None else self.codebook.nbytes

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def entries(self) -> int:
        """Stored values: every weight (dense), or non-zeros plus fillers (sparse)."""
        if self.values is not None:
            return self.values.count
        return len(self.raw) // np.dtype(self.dtype).itemsize


def encode_quantized(key: str, codebook: np.ndarray, indices: np.ndarray, values: np.ndarray,
                     dtype: str = "float32") -> EncodedTensor:
    """Encode a quantized weight: ``codebook`` (G, K), ``indices`` and ``values`` of the weight's shape.

    ``values`` is the effective weight; it must equal ``codebook[g, indices]`` bit-exactly
    wherever it is non-zero (ValueError otherwise). ``dtype``: the codebook's storage; float16
    rounds the centroids (or a grid's scales), and the weight decodes to the rounded ones.
    """
    codebook = np.ascontiguousarray(codebook, dtype=np.float32)
    values = np.ascontiguousarray(values, dtype=np.float32)
    indices = np.asarray(indices, dtype=np.int64)
    _check_representation(key, codebook, indices, values)
    if dtype not in FLOAT_DTYPES:
        raise ValueError(f"float storage must be one of {FLOAT_DTYPES}, got {dtype!r}")
    grid = detect_grid(codebook, dtype) if codebook.shape[1] <= MAX_ALPHABET else None
    if grid is not None:
        codebook, values = grid_codebook(grid), _decoded_values(grid.codebook(), indices, values)
    elif dtype != "float32":
        codebook, values = _rounded_codebook(key, codebook, indices, values, dtype)
    zero = values.reshape(-1) == 0
    codebook, zero_symbol = _with_zero_column(codebook, needed=bool(zero.any()))  # a grid's is there already
    symbols = np.where(zero, zero_symbol, indices.reshape(-1))
    shape = tuple(values.shape)
    cb_bytes = grid.nbytes if grid is not None else codebook.nbytes
    candidates: list[tuple[int, Callable[[], EncodedTensor]]] = [
        (values.size * np.dtype(dtype).itemsize, lambda: _encode_float_dense(key, values, dtype))]
    if codebook.shape[1] <= MAX_ALPHABET:
        candidates.append((coded_size(np.bincount(symbols)) + cb_bytes,
                           lambda: EncodedTensor(key, shape, CodedStream.of(symbols), codebook, grid)))
        positions = np.flatnonzero(~zero)
        gap = sparse.gaps(positions)
        kept = np.bincount(symbols[positions], minlength=codebook.shape[1])
        for width in _widths(values.size) if zero.any() else ():
            counts = kept.copy()
            counts[zero_symbol] += sparse.filler_count(gap, width)
            cost = coded_size(counts) + coded_size(sparse.skip_counts(gap, width)) + cb_bytes
            candidates.append((cost, lambda w=width: _quantized_sparse(key, shape, codebook, grid, symbols,
                                                                       positions, zero_symbol, w)))
    return min(candidates, key=lambda c: c[0])[1]()


def grid_codebook(grid: Grid) -> np.ndarray:
    """The float32 codebook a grid decodes to: its K levels, plus a zero column (K + 1) when the
    rows' zero levels sit at different offsets, so that no column is zero in every row."""
    return _with_zero_column(grid.codebook(), needed=True)[0]


def encode_float(key: str, values: np.ndarray, dtype: str = "float32") -> EncodedTensor:
    """Encode float ``values`` stored as ``dtype`` (float16 or float32), dense or sparse."""
    values = np.ascontiguousarray(values, dtype=np.float32)
    item = np.dtype(dtype).itemsize
    candidates: list[tuple[int, Callable[[], EncodedTensor]]] = [
        (values.size * item, lambda: _encode_float_dense(key, values, dtype))]
    positions = np.flatnonzero(values.reshape(-1) != 0)
    gap = sparse.gaps(positions)
    for width in _widths(values.size) if positions.size < values.size else ():
        entries = positions.size + sparse.filler_count(gap, width)
        cost = coded_size(sparse.skip_counts(gap, width)) + entries * item
        candidates.append((cost, lambda w=width: _float_sparse(key, values, positions, dtype, w)))
    return min(candidates, key=lambda c: c[0])[1]()


def checked_values(layer: EncodedTensor, source: str = "the file") -> np.ndarray:
    """The float32 values of ``layer``, decoded once: the reader checks them (exactly the declared
    entries, inside the weights, finite) and decoding and the report reuse them. Read-only."""
    cached = layer.__dict__.get("_checked")
    if cached is not None:
        return cached
    try:
        values = decode_tensor(layer)
    except ValueError as exc:
        raise UserError(f"{source}: layer {layer.key} is damaged ({exc})") from None
    if not np.isfinite(values).all():
        raise UserError(f"{source}: layer {layer.key} decodes to non-finite values (NaN or inf)")
    values.flags.writeable = False
    object.__setattr__(layer, "_checked", values)  # a cache on a frozen record, not part of it
    return values


def decode_tensor(encoded: EncodedTensor) -> np.ndarray:
    """The float32 values of ``encoded`` (its shape); ValueError when the parts do not fit together."""
    numel = encoded.numel
    positions = None
    if encoded.index is not None:
        positions = sparse.positions_from_skips(_skips(encoded))
        if positions.size and positions[-1] >= numel:
            raise ValueError(f"relative indices run past the {numel} weights")
    expected = numel if positions is None else positions.size
    if encoded.entries != expected:
        raise ValueError(f"{encoded.entries} values for {expected} entries")
    entry_values = _lookup_codebook(encoded, positions) if encoded.values is not None else _raw_values(encoded)
    if positions is None:
        return entry_values.reshape(encoded.shape)
    dense = np.zeros(numel, dtype=np.float32)
    dense[positions] = entry_values
    return dense.reshape(encoded.shape)


def _check_representation(key: str, codebook: np.ndarray, indices: np.ndarray, values: np.ndarray) -> None:
    if codebook.ndim != 2 or codebook.shape[0] not in (1, values.shape[0] if values.ndim else 1):
        raise ValueError(f"{key}: codebook shape {codebook.shape} does not fit weight {values.shape}")
    if indices.shape != values.shape:
        raise ValueError(f"{key}: indices shape {indices.shape} differs from weight {values.shape}")
    live = values != 0
    rows = _rows(codebook.shape[0], values.shape)
    idx = indices[live]
    if idx.size and (idx.min() < 0 or idx.max() >= codebook.shape[1]):
        raise ValueError(f"{key}: codebook index out of range")
    if not np.array_equal(codebook[rows[live], idx].view(np.int32), values[live].view(np.int32)):
        raise ValueError(f"{key}: codebook[indices] does not reproduce the weight bit-exactly")


def _rounded_codebook(key: str, codebook: np.ndarray, indices: np.ndarray, values: np.ndarray,
                      dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """(codebook stored as ``dtype``, the float32 weight it then reproduces: 0 where ``values`` is)."""
    with np.errstate(over="ignore"):
        stored = codebook.astype(dtype)
    if not np.isfinite(stored).all():
        raise ValueError(f"{key}: a codebook value is out of {dtype} range")
    return stored, _decoded_values(stored.astype(np.float32), indices, values)


def _decoded_values(codebook: np.ndarray, indices: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The float32 weight ``codebook`` (G, K) and ``indices`` give: 0 where ``values`` is 0."""
    live = values != 0
    decoded = np.zeros_like(values)
    decoded[live] = codebook[_rows(codebook.shape[0], values.shape)[live], indices[live]]
    return decoded


def _rows(groups: int, shape: tuple[int, ...]) -> np.ndarray:
    """Codebook row of every weight (shape), for G = 1 or G = shape[0]."""
    if groups == 1:
        return np.zeros(shape, dtype=np.int64)
    return np.broadcast_to(np.arange(groups).reshape(-1, *([1] * (len(shape) - 1))), shape)


def _with_zero_column(codebook: np.ndarray, needed: bool) -> tuple[np.ndarray, int]:
    """(codebook, index of a column that is 0.0 in every row), appending one if ``needed`` and absent."""
    zero_columns = np.flatnonzero((codebook == 0).all(axis=0))
    if zero_columns.size or not needed:
        return codebook, int(zero_columns[0]) if zero_columns.size else -1
    zeros = np.zeros((codebook.shape[0], 1), dtype=codebook.dtype)
    return np.concatenate([codebook, zeros], axis=1), codebook.shape[1]


def _widths(numel: int) -> range:
    """Relative-index widths worth trying for a tensor of ``numel`` weights."""
    return range(1, min(sparse.MAX_INDEX_WIDTH, max(numel, 2).bit_length()) + 1)


def _encode_float_dense(key: str, values: np.ndarray, dtype: str) -> EncodedTensor:
    return EncodedTensor(key, tuple(values.shape), raw=_to_bytes(key, values.reshape(-1), dtype), dtype=dtype)


def _quantized_sparse(key, shape, codebook, grid, symbols, positions, zero_symbol, width) -> EncodedTensor:
    skips, is_filler = sparse.relative_indices(positions, width)
    entry_symbols = np.full(skips.size, zero_symbol, dtype=np.int64)
    entry_symbols[~is_filler] = symbols[positions]
    return EncodedTensor(key, shape, CodedStream.of(entry_symbols), codebook, grid,
                         index=CodedStream.of(skips), index_width=width)


def _float_sparse(key, values, positions, dtype, width) -> EncodedTensor:
    skips, is_filler = sparse.relative_indices(positions, width)
    entry_values = np.zeros(skips.size, dtype=np.float32)
    entry_values[~is_filler] = values.reshape(-1)[positions]
    return EncodedTensor(key, tuple(values.shape), raw=_to_bytes(key, entry_values, dtype), dtype=dtype,
                         index=CodedStream.of(skips), index_width=width)


def _to_bytes(key: str, values: np.ndarray, dtype: str) -> bytes:
    if dtype not in FLOAT_DTYPES:
        raise ValueError(f"float storage must be one of {FLOAT_DTYPES}, got {dtype!r}")
    with np.errstate(over="ignore"):
        stored = values.astype(np.dtype(dtype).newbyteorder("<"))
    if not np.array_equal(np.isfinite(stored), np.isfinite(values)):
        raise ValueError(f"{key}: a value is out of {dtype} range")
    return stored.tobytes()


def _lookup_codebook(encoded: EncodedTensor, positions: np.ndarray | None) -> np.ndarray:
    """Codebook values of the entries; ``positions`` are their flat positions (None: dense)."""
    codebook, shape = encoded.codebook, encoded.shape
    if codebook is None or codebook.ndim != 2 or codebook.shape[0] not in (1, shape[0] if shape else 1):
        raise ValueError(f"codebook does not fit a weight of shape {shape}")
    if encoded.values.alphabet > codebook.shape[1]:
        raise ValueError(f"code table has {encoded.values.alphabet} symbols for {codebook.shape[1]} codebook entries")
    symbols = encoded.values.decode()
    if codebook.shape[0] == 1:
        return codebook[0, symbols].astype(np.float32)
    if positions is None:
        rows = _rows(codebook.shape[0], shape).reshape(-1)
    else:
        rows = positions // (encoded.numel // shape[0])
    return codebook[rows, symbols].astype(np.float32)


def _raw_values(encoded: EncodedTensor) -> np.ndarray:
    if encoded.dtype not in FLOAT_DTYPES or encoded.raw is None:
        raise ValueError(f"unknown float storage {encoded.dtype!r}")
    dtype = np.dtype(encoded.dtype).newbyteorder("<")
    if len(encoded.raw) % dtype.itemsize:
        raise ValueError(f"{len(encoded.raw)} bytes are not whole {encoded.dtype} values")
    return np.frombuffer(encoded.raw, dtype=dtype).astype(np.float32)


def _skips(encoded: EncodedTensor) -> np.ndarray:
    if not 1 <= encoded.index_width <= sparse.MAX_INDEX_WIDTH:
        raise ValueError(f"relative-index width {encoded.index_width} out of [1, {sparse.MAX_INDEX_WIDTH}]")
    if encoded.index.alphabet > 1 << encoded.index_width:
        raise ValueError(f"relative-index table larger than {encoded.index_width} bits allow")
    return encoded.index.decode()
