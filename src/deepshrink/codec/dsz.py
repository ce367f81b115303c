"""The ``.dsz`` file: a safetensors container of byte streams, codebooks and code-length tables.

Tensors (all 1-D): ``streams`` (uint8: the layer table as deflated JSON (version 5 on), then
per layer its value stream then its relative-index stream, then the raw bytes of all other
tensors, then the model's history as deflated JSON (version 4 on)), ``codebooks`` (the layers'
codebooks, row-major, one after another, or a grid layer's scales; float32, or float16 when
``float_dtype`` is float16, from version 3 on) and ``code_lengths`` (uint8: per layer its 4-bit
code-length tables, value table, a grid layer's packed offsets, then index table). Metadata
``deepshrink-dsz`` holds JSON::

    {"format": "deepshrink-dsz", "version": 5, "model": {ModelInfo without history}, "float_dtype": "float32",
     "bn_affine": false, "layers": {"bytes": 634, "crc32": ...},
     "other": {"bytes": 1234, "crc32": ...}, "history": {"bytes": 345, "crc32": ...},
     "codebooks_crc32": ..., "code_lengths_crc32": ...}

and the deflated layer table is::

    {"columns": ["key", "numel", "coding", "symbols", "alphabet", "bytes", "crc32", "codebook_rows",
                 "codebook_size", "index_width", "index_symbols", "index_alphabet", "index_bytes", "index_crc32"],
     "rows": [["conv2.weight", 4608, "grid", 1160, 17, 520, 2215406405, 1, 16, 5, 1160, 32, 370, 37304121],
              ["fc.weight", 640, "float32", 640, 0, 2560, 1029381622, 0, 0, 0, 0, 0, 0, 0], ...]}

One row per coded weight (a table, not objects, to keep it small): its value stream
(``coding`` huffman: codebook indices with a code-length table of ``alphabet`` entries and a
codebook of ``codebook_rows`` x ``codebook_size``; grid: the same with a linear-grid codebook
of ``codebook_rows`` rows and ``codebook_size`` levels stored as its scales and offsets
(:mod:`deepshrink.codec.grid`), the values' alphabet one larger for a zero column;
float16/float32: raw values), and for the sparse layout (``index_width`` > 0) its
Huffman-coded relative indices. Shapes come from the architecture; ``numel`` (the weight's
element count) must agree with it, so an edited architecture cannot pour a layer's weights
into a tensor of another size. A file saved without an architecture (``"arch": null`` in
``model``, which then records its layer shapes in ``modules``) takes its shapes from a fresh
instance of the model's class given by the caller.

Older files are still read: version 1 (no ``numel`` column, no ``bn_affine``), 2 (float32
codebooks always), 3 (the history in ``model``, uncompressed) and 4 (no grid rows, the layer
table as ``layer_columns`` and ``layers`` rows in the metadata). The history (provenance: one
record per stage) and the layer table are deflated because they are the largest parts of the
header, and safetensors escapes every quote of the metadata once more: on a ResNet-20 the
layer table takes 1,745 characters as JSON, 634 bytes deflated.
``bn_affine``: the BatchNorms' weights and biases in ``other`` are their inference scales
and shifts, and their running statistics are not stored (:mod:`deepshrink.codec.batchnorm`).
``bytes`` and ``crc32`` are the length and CRC-32 of each stream. The JSON ends with
``"crc32"``: the CRC-32 of the compact JSON of everything before it, so no byte of the file goes
unchecked. (One metadata entry only: safetensors writes several in no fixed order, and the same
model should always give the same bytes.)

Reading validates everything (format, version, checksums, lengths, table consistency, code
lengths, index ranges, sizes against the architecture) and raises :class:`UserError` naming
the problem: a damaged or edited file never gives a silently different model.
"""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn
from safetensors.numpy import load as load_safetensors
from safetensors.numpy import save as save_safetensors

from deepshrink.codec.grid import offset_bytes, read_grid
from deepshrink.codec.huffman import check_lengths, check_size
from deepshrink.codec.layer import FLOAT_DTYPES, EncodedTensor, checked_values, grid_codebook
from deepshrink.codec.model import EncodedModel, other_state
from deepshrink.codec.sparse import MAX_INDEX_WIDTH
from deepshrink.codec.stream import MAX_ALPHABET, CodedStream, read_table, table_size
from deepshrink.errors import UserError
from deepshrink.files import atomic_write_bytes
from deepshrink.models import ModelInfo
from deepshrink.models.file import allowed_by, prepared_model

FORMAT = "deepshrink-dsz"
VERSION = 5
READABLE_VERSIONS = (1, 2, 3, 4, 5)
METADATA_KEY = "deepshrink-dsz"
TENSORS = {"streams": (np.uint8,), "codebooks": (np.float32, np.float16), "code_lengths": (np.uint8,)}
COLUMNS = ("key", "numel", "coding", "symbols", "alphabet", "bytes", "crc32", "codebook_rows", "codebook_size",
           "index_width", "index_symbols", "index_alphabet", "index_bytes", "index_crc32")
COLUMNS_BY_VERSION = {1: tuple(c for c in COLUMNS if c != "numel"), 2: COLUMNS, 3: COLUMNS, 4: COLUMNS, 5: COLUMNS}
V5 = 5  # the first version with grid rows and the layer table deflated in the streams
MAX_INFLATED_BYTES = 1 << 20  # a deflated history or layer table, decompressed; real ones are a few KB


def to_bytes(encoded: EncodedModel) -> bytes:
    """The ``.dsz`` file of ``encoded``."""
    streams, codebooks, tables, rows = [], [], [], []
    for layer in encoded.layers:
        if layer.grid is not None:
            rows.append([layer.key, layer.numel, "grid", *_stream_entry(layer.values), layer.grid.scales.size,
                         layer.grid.levels])
            codebooks.append(layer.grid.scales)
            tables += [layer.values.table_bytes(), layer.grid.packed_offsets()]
            streams.append(layer.values.data)
        elif layer.values is not None:
            rows.append([layer.key, layer.numel, "huffman", *_stream_entry(layer.values), *layer.codebook.shape])
            codebooks.append(layer.codebook.reshape(-1))
            tables.append(layer.values.table_bytes())
            streams.append(layer.values.data)
        else:
            rows.append([layer.key, layer.numel, layer.dtype, layer.entries, 0, len(layer.raw), _crc(layer.raw), 0, 0])
            streams.append(layer.raw)
        if layer.index is not None:
            rows[-1] += [layer.index_width, *_stream_entry(layer.index)]
            tables.append(layer.index.table_bytes())
            streams.append(layer.index.data)
        else:
            rows[-1] += [0] * 5
    info = {k: v for k, v in encoded.info.to_dict().items() if k not in ("format", "version", "parametrizations")}
    history = _deflate(_compact(_rounded(info.pop("history", []))).encode())
    layer_table = _deflate(_compact({"columns": list(COLUMNS), "rows": rows}).encode())
    streams = [layer_table, *streams, encoded.other, history]
    tensors = {"streams": np.frombuffer(b"".join(streams), dtype=np.uint8),
               "codebooks": np.concatenate([np.zeros(0, _codebook_dtype(encoded.float_dtype, VERSION)), *codebooks]),
               "code_lengths": np.frombuffer(b"".join(tables), dtype=np.uint8)}
    table = {
        "format": FORMAT, "version": VERSION, "model": info, "float_dtype": encoded.float_dtype,
        "bn_affine": encoded.bn_affine,
        "layers": {"bytes": len(layer_table), "crc32": _crc(layer_table)},
        "other": {"bytes": len(encoded.other), "crc32": _crc(encoded.other)},
        "history": {"bytes": len(history), "crc32": _crc(history)},
        "codebooks_crc32": _crc(tensors["codebooks"].tobytes()),
        "code_lengths_crc32": _crc(tensors["code_lengths"].tobytes())}
    return save_safetensors(tensors, metadata={METADATA_KEY: _compact({**table, "crc32": _table_crc(table)})})


def from_bytes(data: bytes, source: str = "the .dsz file", model: nn.Module | None = None,
               allow_builders=()) -> EncodedModel:
    """Parse and check a ``.dsz`` file; a :class:`UserError` for anything wrong with it. The
    sizes are checked against the file's architecture (a builder is imported only from the
    ``allow_builders`` packages), or against ``model``, a fresh instance of the encoded model's
    class, which receives the file's resized layers (needed when the file has no architecture)."""
    tensors, metadata = _container(data, source)
    table = _table(metadata, source)
    cursor = {name: _Cursor(tensors[name], name, source) for name in TENSORS}
    for name in ("codebooks", "code_lengths"):
        if _crc(tensors[name].tobytes()) != table.get(f"{name}_crc32"):
            raise UserError(f"{source} is damaged: checksum of {name} does not match")
    if not np.isfinite(tensors["codebooks"]).all():
        raise UserError(f"{source} is damaged or was edited: a codebook entry is non-finite (NaN or inf)")
    try:
        info = ModelInfo.from_dict({**_field(table, "model", dict), "format": "deepshrink-model", "version": 1})
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UserError(f"{source}: malformed model description ({exc})") from None
    float_dtype = _field(table, "float_dtype", str)
    if float_dtype not in FLOAT_DTYPES:
        raise UserError(f"{source}: unknown float storage {float_dtype!r}")
    bn_affine = _field(table, "bn_affine", bool) if table["version"] >= 2 else False
    expected = _codebook_dtype(float_dtype, table["version"])
    if tensors["codebooks"].dtype != expected:
        raise UserError(f"{source} is damaged: its codebooks are {tensors['codebooks'].dtype.name}, "
                        f"expected {np.dtype(expected).name}")
    columns = COLUMNS_BY_VERSION[table["version"]]
    found, rows = _layer_table(table, cursor["streams"], source)
    if found != list(columns):
        raise UserError(f"{source}: the layer table has columns {found}, expected {list(columns)}")
    reference = prepared_model(info, model, allow_builders, source)
    shapes = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    seen: set[str] = set()
    layers = [_layer(row, columns, shapes, cursor, source, table["version"] >= V5, seen) for row in rows]
    other = _field(table, "other", dict)
    other_bytes = cursor["streams"].take(_field(other, "bytes", int), _field(other, "crc32", int), "other tensors")
    if table["version"] >= 4:
        info.history = _history(cursor["streams"], _field(table, "history", dict), source)
    for item in cursor.values():
        item.finish()
    for layer in layers:  # every stream decoded once here, so decode, report and eval refuse the same files
        checked_values(layer, source)
    encoded = EncodedModel(info, float_dtype, layers, other_bytes, bn_affine)
    other_state(encoded, reference, source)  # the other tensors: sizes and finite values, as decoding checks them
    return encoded


def write_dsz(path: str | os.PathLike, encoded: EncodedModel) -> int:
    """Write ``encoded`` to ``path`` atomically; returns the file size in bytes."""
    data = to_bytes(encoded)
    atomic_write_bytes(path, data)
    return len(data)


def read_dsz(path: str | os.PathLike, model: nn.Module | None = None, allow_builders=()) -> EncodedModel:
    """Read and check the ``.dsz`` file at ``path`` (``model``, ``allow_builders``: as
    :func:`from_bytes`; a :class:`~deepshrink.models.file.ModelPath` adds the builders it allows)."""
    allow_builders = tuple(allow_builders) + allowed_by(path)
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f".dsz file not found: {path}") from None
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    return from_bytes(data, str(path), model, allow_builders)


def _codebook_dtype(float_dtype: str, version: int) -> type:
    """Codebook storage: float32, or float16 in files (version 3 on) whose floats are float16."""
    return np.float16 if version >= 3 and float_dtype == "float16" else np.float32


def _crc(data: bytes) -> int:
    return zlib.crc32(data)


def _rounded(value: Any, digits: int = 6) -> Any:
    """``value`` with every float rounded to ``digits`` significant digits (provenance records:
    a sparsity such as 0.7209201388888888 costs 18 bytes of header, 0.72092 costs 7)."""
    if isinstance(value, float):
        return float(f"{value:.{digits}g}")
    if isinstance(value, dict):
        return {k: _rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v, digits) for v in value]
    return value


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _table_crc(table: dict[str, Any]) -> int:
    """CRC-32 of the compact JSON of ``table`` without its ``crc32`` entry."""
    return _crc(_compact({k: v for k, v in table.items() if k != "crc32"}).encode())


def _stream_entry(stream: CodedStream) -> list[int]:
    """symbols, alphabet, bytes, crc32."""
    return [stream.count, stream.alphabet, len(stream.data), _crc(stream.data)]


def _container(data: bytes, source: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The tensors and the metadata of a safetensors file."""
    try:
        tensors = load_safetensors(data)
        header = json.loads(data[8:8 + int.from_bytes(data[:8], "little")])
    except Exception as exc:  # safetensors reports a malformed file with its own error types
        raise UserError(f"{source} is not a .dsz file or is damaged ({str(exc).splitlines()[0][:200]})") from None
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(metadata, dict) or METADATA_KEY not in metadata:
        raise UserError(f"{source} is a safetensors file but not a .dsz file (no '{METADATA_KEY}' metadata)")
    if set(tensors) != set(TENSORS):
        raise UserError(f"{source} is damaged: it holds tensors {sorted(tensors)}, expected {sorted(TENSORS)}")
    for name, dtypes in TENSORS.items():
        if tensors[name].dtype not in dtypes or tensors[name].ndim != 1:
            raise UserError(f"{source} is damaged: tensor {name} is not 1-D "
                            f"{' or '.join(np.dtype(d).name for d in dtypes)}")
    return tensors, metadata


def _table(metadata: dict[str, str], source: str) -> dict[str, Any]:
    """The checked JSON table of the metadata."""
    text = metadata[METADATA_KEY]
    try:
        table = json.loads(text)
    except (json.JSONDecodeError, RecursionError):  # RecursionError: JSON nested too deeply
        raise UserError(f"{source} is damaged: unreadable metadata") from None
    if not isinstance(table, dict) or table.get("format") != FORMAT:
        found = table.get("format") if isinstance(table, dict) else None
        raise UserError(f"{source} is not a .dsz file (format {found!r})")
    if table.get("version") not in READABLE_VERSIONS or isinstance(table.get("version"), bool):
        raise UserError(f"{source} is .dsz version {table.get('version')!r}; this deepshrink reads versions "
                        f"{', '.join(map(str, READABLE_VERSIONS))}")
    if table.get("crc32") != _table_crc(table):
        raise UserError(f"{source} is damaged or was edited: checksum of the metadata does not match")
    return table


def _layer(row: Any, columns: tuple[str, ...], shapes: dict[str, tuple[int, ...]], cursor: dict[str, "_Cursor"],
           source: str, grids: bool, seen: set[str]) -> EncodedTensor:
    """One row of the layer table (``columns``), its bytes taken from the cursors; ``grids``:
    whether the file's version has grid rows; ``seen``: the keys of the rows before (this one is added)."""
    fields = dict(zip(columns, row)) if isinstance(row, list) and len(row) == len(columns) else {}
    if not fields or not all(isinstance(v, str) if k in ("key", "coding") else _count(v) for k, v in fields.items()):
        raise UserError(f"{source}: malformed layer table row {str(row)[:80]}")
    key, coding = fields["key"], fields["coding"]
    if key not in shapes:
        raise UserError(f"{source}: layer {key!r} is not a tensor of the architecture")
    expected = int(np.prod(shapes[key]))
    if fields.get("numel", expected) != expected:
        raise UserError(f"{source}: layer {key} holds {fields['numel']} weights but the architecture gives it "
                        f"{expected}: the file was edited or damaged")
    if key in seen:
        raise UserError(f"{source}: layer {key!r} is unknown or repeated in the layer table")
    seen.add(key)
    _check_entries(fields, key, expected, source)
    parts: dict[str, Any] = {}
    if coding == "huffman":
        groups, size = fields["codebook_rows"], fields["codebook_size"]
        if not (1 <= groups <= 1 << 16 and 1 <= size <= MAX_ALPHABET):
            raise UserError(f"{source}: layer {key} has a malformed codebook shape")
        parts["values"] = _coded(fields, "", key, "values", size, cursor, source)
        parts["codebook"] = cursor["codebooks"].copy(groups * size, key).reshape(groups, size)
    elif coding == "grid" and grids:
        parts.update(_grid_parts(fields, key, shapes[key], cursor, source))
    elif coding in FLOAT_DTYPES:
        if fields["bytes"] != fields["symbols"] * np.dtype(coding).itemsize:
            raise UserError(f"{source}: layer {key} has {fields['bytes']} bytes "
                            f"for {fields['symbols']} {coding} values")
        parts["raw"] = cursor["streams"].take(fields["bytes"], fields["crc32"], key)
        parts["dtype"] = coding
        if not np.isfinite(np.frombuffer(parts["raw"], dtype=np.dtype(coding).newbyteorder("<"))).all():
            raise UserError(f"{source}: layer {key} holds non-finite values (NaN or inf): the file was edited")
    else:
        raise UserError(f"{source}: layer {key} has unknown coding {coding!r}")
    width = fields["index_width"]
    if width > MAX_INDEX_WIDTH:
        raise UserError(f"{source}: layer {key} has relative indices of {width} bits")
    if width:
        parts["index"] = _coded(fields, "index_", key, "relative indices", 1 << width, cursor, source)
        parts["index_width"] = width
    return EncodedTensor(key, shapes[key], **parts)


def _check_entries(fields: dict[str, Any], key: str, numel: int, source: str) -> None:
    """The symbol counts of a row against the layer's ``numel`` weights, checked before any
    stream is read or decoded: a dense layer stores one value per weight, a sparse one at most
    one entry per weight (non-zeros and fillers) and one relative index per entry."""
    entries, sparse = fields["symbols"], fields["index_width"] > 0
    if entries > numel or (not sparse and entries != numel):
        raise UserError(f"{source}: layer {key} declares {entries} stored values for {numel} weights "
                        f"({'sparse' if sparse else 'dense'}): the file was edited or damaged")
    if sparse and fields["index_symbols"] != entries:
        raise UserError(f"{source}: layer {key} declares {fields['index_symbols']} relative indices for "
                        f"{entries} stored values: the file was edited or damaged")


def _grid_parts(fields: dict[str, Any], key: str, shape: tuple[int, ...], cursor: dict[str, "_Cursor"],
                source: str) -> dict[str, Any]:
    """The value stream, codebook and grid of a "grid" row: ``codebook_rows`` scales in the
    codebooks, their packed offsets after the value stream's code-length table."""
    groups, levels = fields["codebook_rows"], fields["codebook_size"]
    if groups not in (1, shape[0] if shape else 1) or not 2 <= levels < MAX_ALPHABET:
        raise UserError(f"{source}: layer {key} has a malformed grid shape")
    values = _coded(fields, "", key, "values", levels + 1, cursor, source)
    scales = cursor["codebooks"].copy(groups, key)
    packed = cursor["code_lengths"].take(offset_bytes(groups, levels), None, key)
    try:
        grid = read_grid(scales, packed, levels)
    except ValueError as exc:
        raise UserError(f"{source}: layer {key} is damaged ({exc})") from None
    with np.errstate(over="ignore", invalid="ignore"):
        codebook = grid_codebook(grid)
    if not np.isfinite(codebook).all():
        raise UserError(f"{source}: layer {key} has a grid with non-finite levels (NaN or inf): the file was edited")
    if values.alphabet > codebook.shape[1]:
        raise UserError(f"{source}: layer {key} has a malformed values table")
    return {"values": values, "codebook": codebook, "grid": grid}


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _coded(fields: dict[str, Any], prefix: str, key: str, what: str, limit: int, cursor: dict[str, "_Cursor"],
           source: str) -> CodedStream:
    """The Huffman stream of columns ``prefix`` + symbols/alphabet/bytes/crc32, alphabet at most ``limit``."""
    alphabet = fields[prefix + "alphabet"]
    if alphabet > min(limit, MAX_ALPHABET):
        raise UserError(f"{source}: layer {key} has a malformed {what} table")
    lengths = read_table(cursor["code_lengths"].take(table_size(alphabet), None, key), alphabet)
    try:  # checked here, so that every reader (decode, report) refuses the same files
        check_lengths(lengths)
    except ValueError as exc:
        raise UserError(f"{source}: layer {key} has a malformed {what} table ({exc})") from None
    try:
        check_size(fields[prefix + "bytes"], lengths, fields[prefix + "symbols"])
    except ValueError as exc:
        raise UserError(f"{source}: layer {key} is damaged ({what}: {exc})") from None
    data = cursor["streams"].take(fields[prefix + "bytes"], fields[prefix + "crc32"], key)
    return CodedStream(data, lengths, fields[prefix + "symbols"])


def _deflate(data: bytes) -> bytes:
    """Raw deflate at level 9 (no zlib header and Adler-32: the stream has its CRC-32)."""
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return deflater.compress(data) + deflater.flush()


def _history(streams: "_Cursor", entry: dict[str, Any], source: str) -> list[dict[str, Any]]:
    """The model history: deflated JSON, a list of stage records."""
    history = _inflated_json(streams, entry, "model history", source)
    if not isinstance(history, list) or not all(isinstance(record, dict) for record in history):
        raise UserError(f"{source} is damaged: unreadable model history")
    return history


def _layer_table(table: dict[str, Any], streams: "_Cursor", source: str) -> tuple[list[Any], list[Any]]:
    """(column names, rows) of the layer table: deflated JSON at the start of the streams from
    version 5 on, in the metadata before."""
    if table["version"] < V5:
        return _field(table, "layer_columns", list), _field(table, "layers", list)
    layer_table = _inflated_json(streams, _field(table, "layers", dict), "layer table", source)
    if not isinstance(layer_table, dict) or set(layer_table) != {"columns", "rows"}:
        raise UserError(f"{source} is damaged: unreadable layer table")
    return _field(layer_table, "columns", list), _field(layer_table, "rows", list)


def _inflated_json(streams: "_Cursor", entry: dict[str, Any], what: str, source: str) -> Any:
    """The JSON value deflated in the next stream piece (``entry``: its bytes and crc32)."""
    data = streams.take(_field(entry, "bytes", int), _field(entry, "crc32", int), f"the {what}")
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        text = inflater.decompress(data, MAX_INFLATED_BYTES)
        return json.loads(text) if inflater.eof and not inflater.unused_data else None
    except (zlib.error, ValueError, RecursionError):  # RecursionError: JSON nested too deeply
        raise UserError(f"{source} is damaged: unreadable {what}") from None


def _field(obj: dict[str, Any], name: str, kind: type) -> Any:
    value = obj.get(name) if isinstance(obj, dict) else None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise UserError(f"the .dsz metadata is malformed: {name!r} must be a {kind.__name__}")
    return value


class _Cursor:
    """Reads consecutive pieces of one container tensor; all of it must be used."""

    def __init__(self, array: np.ndarray, name: str, source: str):
        self.array, self.name, self.source, self.offset = array, name, source, 0

    def piece(self, count: int, key: str) -> np.ndarray:
        if count < 0 or self.offset + count > self.array.size:
            raise UserError(f"{self.source} is damaged: {self.name} ends before the data of {key}")
        piece = self.array[self.offset:self.offset + count]
        self.offset += count
        return piece

    def copy(self, count: int, key: str) -> np.ndarray:
        return self.piece(count, key).copy()

    def take(self, count: int, crc: int | None, key: str) -> bytes:
        piece = self.piece(count, key).tobytes()
        if crc is not None and _crc(piece) != crc:
            raise UserError(f"{self.source} is damaged: checksum of the data of {key} in {self.name} does not match")
        return piece

    def finish(self) -> None:
        if self.offset != self.array.size:
            raise UserError(f"{self.source} is damaged: {self.array.size - self.offset} unused bytes in {self.name}")
