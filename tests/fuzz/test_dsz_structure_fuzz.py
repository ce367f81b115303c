"""Structure-aware fuzzing of the .dsz reader, decoder and report (issue 24, item 8).

One small real file (:mod:`dsz_sample`: digits-cnn, pruned + k-means 4-bit layers Huffman-coded
and sparse, float32 layers, BatchNorms) is taken apart into its metadata table, layer table,
codebooks, code-length tables and streams; each case applies 1-3 mutations to those fields
(counts, shapes, alphabet sizes, code lengths, byte counts, dtypes, keys, versions; rows
swapped, permuted, duplicated, deleted; numeric extremes; stream bytes cut, extended or
changed) and then recomputes every CRC the way the writer does (most cases also recompute each
stream's CRC from where the reader will find it, so the checks behind the CRCs are reached).
Every case must end in a decoded model or a :class:`UserError`: any other exception is a crash.
The default run takes ``CASES`` cases from a fixed seed; ``-m slow`` runs ``SLOW_CASES`` more.
"""

import importlib.util
import json
import random
import zlib
from pathlib import Path

import numpy as np
import pytest

from deepshrink.codec.dsz import from_bytes
from deepshrink.codec.model import decode_model
from deepshrink.errors import UserError
from deepshrink.pipeline.report import build_report

_spec = importlib.util.spec_from_file_location("dsz_sample", Path(__file__).with_name("dsz_sample.py"))
sample = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sample)

CASES = 3000
SLOW_CASES = 30000
EXTREMES = [0, 1, -1, 2, 3, 4, 15, 16, 17, 255, 256, 4095, 4096, 4097, 65535, 65536, 2**31 - 1, 2**31, 2**32,
            2**53, 2**63 - 1, 2**63, 2**64, -2**63, 10**30, 10**400]
ODD = [None, True, False, 1.5, float("nan"), float("inf"), "", "x", [], {}, [1, 2], "float32"]
CODINGS = ["huffman", "grid", "float16", "float32", "int8", "", "HUFFMAN"]


@pytest.fixture(scope="module")
def parts():
    return sample.split(sample.sample_dsz())


def _number(rng: random.Random, value) -> object:
    roll = rng.random()
    if roll < 0.45 and isinstance(value, int) and not isinstance(value, bool):
        return value + rng.choice([-2, -1, 1, 2, 7, value, -value, -(value // 2)])
    if roll < 0.85:
        return rng.choice(EXTREMES)
    return rng.choice(ODD)


def _mutate_row_field(rng, table, layers, tensors, rest, why):
    rows = layers["rows"]
    if not rows:
        return rest
    row = rng.choice(rows)
    if not isinstance(row, list) or not row:
        return rest
    column = rng.randrange(len(row))
    name = layers["columns"][column] if column < len(layers["columns"]) else column
    old = row[column]
    if name == "key":
        keys = [r[0] for r in rows if isinstance(r, list) and r]
        row[column] = rng.choice(keys + ["conv1.bias", "bn1.running_var", "nope", "", "fc.weight.x", 5])
    elif name == "coding":
        row[column] = rng.choice(CODINGS + [3])
    else:
        row[column] = _number(rng, old)
    why.append(f"row {row[0]!r}: {name} {old!r} -> {row[column]!r}")
    return rest


def _reshape_rows(rng, table, layers, tensors, rest, why):
    rows = layers["rows"]
    kind = rng.choice(["swap", "permute", "duplicate", "delete", "reverse", "truncate-row", "extend-row",
                       "swap-columns", "delete-column", "rename-column", "rows-not-list"])
    why.append(kind)
    if kind == "swap" and len(rows) > 1:
        i, j = rng.sample(range(len(rows)), 2)
        rows[i], rows[j] = rows[j], rows[i]
    elif kind == "permute":
        rng.shuffle(rows)
    elif kind == "duplicate" and rows:
        i = rng.randrange(len(rows))
        rows.insert(rng.randrange(len(rows) + 1), list(rows[i]))
    elif kind == "delete" and rows:
        del rows[rng.randrange(len(rows))]
    elif kind == "reverse":
        rows.reverse()
    elif kind == "truncate-row" and rows:
        rng.choice(rows).pop()
    elif kind == "extend-row" and rows:
        rng.choice(rows).append(0)
    elif kind == "swap-columns":
        columns = layers["columns"]
        i, j = rng.sample(range(len(columns)), 2)
        columns[i], columns[j] = columns[j], columns[i]
        for row in rows:
            row[i], row[j] = row[j], row[i]
    elif kind == "delete-column":
        i = rng.randrange(len(layers["columns"]))
        del layers["columns"][i]
        for row in rows:
            del row[i]
    elif kind == "rename-column":
        layers["columns"][rng.randrange(len(layers["columns"]))] = rng.choice(["key", "numel", "bytes", "zzz"])
    elif kind == "rows-not-list":
        layers["rows"] = rng.choice([{}, None, 3, [[]], [None], ["conv2.weight"]])
    return rest


def _mutate_table(rng, table, layers, tensors, rest, why):
    field = rng.choice(["version", "float_dtype", "bn_affine", "other", "history", "model.input",
                        "model.classes", "model.arch", "format", "drop"])
    if field == "version":
        table["version"] = rng.choice([0, 1, 2, 3, 4, 6, "5", 5.0, True, None, 2**63])
    elif field == "float_dtype":
        table["float_dtype"] = rng.choice(["float16", "float32", "bfloat16", "float64", 32, None])
    elif field == "bn_affine":
        table["bn_affine"] = rng.choice([True, False, 1, 0, "yes", None])
    elif field in ("other", "history"):
        entry = table[field]
        sub = rng.choice(["bytes", "crc32"])
        entry[sub] = _number(rng, entry[sub])
    elif field == "model.input":  # 10**4, not 10**6: see BENCHMARKS.md, "Hostile inputs and fuzzing (issue 24)"
        shape = table["model"]["input"]["shape"]
        shape[rng.randrange(len(shape))] = rng.choice([0, -1, 1, 2, 7, 10**4, 2**40, 1.5, None, "8"])
    elif field == "model.classes":
        table["model"]["classes"] = rng.choice([[], ["a"] * 11, None, "0123456789", [1] * 10, [None] * 10])
    elif field == "model.arch":
        arch = table["model"]["arch"]
        key = rng.choice(sorted(arch)) if isinstance(arch, dict) and arch else None
        if key is not None:
            arch[key] = rng.choice(ODD + ["digits-cnn", "resnet20", "lenet300"])
    elif field == "format":
        table["format"] = rng.choice(["deepshrink-model", "", None])
    else:
        table.pop(rng.choice(sorted(table)), None)
    why.append(f"table {field}")
    return rest


def _mutate_code_lengths(rng, table, layers, tensors, rest, why):
    lengths = tensors["code_lengths"]
    kind = rng.choice(["nibble", "permute", "truncate", "extend", "zero"])
    why.append(f"code_lengths {kind}")
    if kind == "nibble" and lengths.size:
        i = rng.randrange(lengths.size)
        value = int(lengths[i])
        lengths[i] = (value & 0xF0) | rng.randrange(16) if rng.random() < 0.5 else (value & 0x0F) | rng.randrange(16) << 4
    elif kind == "permute" and lengths.size:  # permuted code lengths: same Kraft sum, other symbols
        start = rng.randrange(lengths.size)
        piece = lengths[start:start + rng.randint(2, 12)].copy()
        nibbles = np.stack([piece & 0x0F, piece >> 4], axis=1).reshape(-1)
        rng.shuffle(nibbles)
        nibbles = nibbles.reshape(-1, 2)
        lengths[start:start + piece.size] = (nibbles[:, 0] | (nibbles[:, 1] << 4)).astype(np.uint8)
    elif kind == "truncate" and lengths.size:
        tensors["code_lengths"] = lengths[:rng.randrange(lengths.size)].copy()
    elif kind == "extend":
        tensors["code_lengths"] = np.concatenate([lengths, np.full(rng.randint(1, 9), rng.randrange(256), np.uint8)])
    elif kind == "zero" and lengths.size:
        start = rng.randrange(lengths.size)
        lengths[start:start + rng.randint(1, 8)] = 0
    return rest


def _mutate_codebooks(rng, table, layers, tensors, rest, why):
    codebooks = tensors["codebooks"]
    kind = rng.choice(["value", "value", "float16", "truncate", "extend", "2d"])
    why.append(f"codebooks {kind}")
    if kind == "value" and codebooks.size:
        codebooks[rng.randrange(codebooks.size)] = rng.choice([np.nan, np.inf, -np.inf, 3e38, -3e38, 0.0, -0.0,
                                                              1e-45, 1.0])
    elif kind == "float16":
        tensors["codebooks"] = codebooks.astype(np.float16)
    elif kind == "truncate" and codebooks.size:
        tensors["codebooks"] = codebooks[:rng.randrange(codebooks.size)].copy()
    elif kind == "extend":
        tensors["codebooks"] = np.concatenate([codebooks, np.zeros(rng.randint(1, 5), np.float32)])
    elif kind == "2d" and codebooks.size % 2 == 0:
        tensors["codebooks"] = codebooks.reshape(2, -1)
    return rest


def _stream_spans(layers):
    """(row, column of the crc, start, length) of each stream the reader takes from ``rest`` in
    order, as far as the rows are well-formed."""
    columns, spans, offset = layers["columns"], [], 0
    for row in layers["rows"] if isinstance(layers["rows"], list) else ():
        if not isinstance(row, list) or len(row) != len(columns):
            break
        fields = dict(zip(columns, row))
        pieces = [("bytes", "crc32")]
        if isinstance(fields.get("index_width"), int) and fields["index_width"] > 0:
            pieces.append(("index_bytes", "index_crc32"))
        for size_column, crc_column in pieces:
            size = fields.get(size_column)
            if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size < 1 << 32 \
                    or crc_column not in columns:
                return spans, None
            spans.append((row, columns.index(crc_column), offset, size))
            offset += size
    return spans, offset


def _mutate_stream(rng, table, layers, tensors, rest, why):
    spans, _ = _stream_spans(layers)
    if not spans:
        return rest
    row, crc_column, start, size = rng.choice(spans)
    kind = rng.choice(["flip", "cut", "extend", "empty"])
    why.append(f"stream of {row[0]!r} {kind}")
    data = bytearray(rest[start:start + size])
    if kind == "flip" and data:
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    elif kind == "cut" and data:
        del data[rng.randrange(len(data)):]
    elif kind == "extend":
        data += bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    elif kind == "empty":
        data = bytearray()
    columns = layers["columns"]
    size_column = columns[crc_column].replace("crc32", "bytes")
    if size_column in columns:
        row[columns.index(size_column)] = len(data)
    return rest[:start] + bytes(data) + rest[start + size:]


def _fix_stream_crcs(table, layers, rest):
    """Every stream's CRC recomputed from where the reader will find it (the attacker's edit)."""
    spans, end = _stream_spans(layers)
    for row, crc_column, start, size in spans:
        row[crc_column] = zlib.crc32(rest[start:start + size])
    if end is None:
        return
    for name in ("other", "history"):
        entry = table.get(name)
        if not isinstance(entry, dict) or not isinstance(entry.get("bytes"), int) or entry["bytes"] < 0:
            return
        entry["crc32"] = zlib.crc32(rest[end:end + entry["bytes"]])
        end += entry["bytes"]


MUTATIONS = [(_mutate_row_field, 5), (_reshape_rows, 2), (_mutate_table, 2), (_mutate_code_lengths, 2),
             (_mutate_codebooks, 1), (_mutate_stream, 2)]


def mutated(parts, rng: random.Random) -> tuple[bytes, list[str]]:
    """One fuzz case: the file of ``parts`` with 1-3 mutations, CRCs recomputed."""
    table, layers, tensors, rest = parts
    table, layers = json.loads(json.dumps(table)), json.loads(json.dumps(layers))
    tensors = {k: np.array(v) for k, v in tensors.items()}
    why: list[str] = []
    functions, weights = zip(*MUTATIONS)
    for _ in range(rng.choice([1, 1, 2, 3])):
        try:  # a mutation that no longer applies to an already mangled structure is skipped
            with np.errstate(all="ignore"):
                rest = rng.choices(functions, weights)[0](rng, table, layers, tensors, rest, why)
        except (TypeError, AttributeError, IndexError, KeyError, ValueError):
            why.append("(skipped)")
    if rng.random() < 0.8:
        try:
            _fix_stream_crcs(table, layers, rest)
        except (TypeError, AttributeError, IndexError, KeyError, ValueError):
            pass
    return sample.join(table, layers, tensors, rest), why


def run_case(data: bytes, path: Path, costs: bool) -> str:
    """'decoded' or 'refused'; any exception but UserError propagates. Decoding and the report
    run independently: each must refuse a file on its own (the report once crashed on files
    that decode refused)."""
    try:
        encoded = from_bytes(data, "fuzz.dsz")
    except UserError as exc:
        assert str(exc) and "\n" not in str(exc), str(exc)
        return "refused"  # report reads with the same reader (read_dsz -> from_bytes): the same refusal
    outcome = "decoded"
    try:
        decode_model(encoded, "fuzz.dsz")
    except UserError as exc:
        assert str(exc) and "\n" not in str(exc), str(exc)
        outcome = "refused"
    path.write_bytes(data)
    try:
        build_report(path, costs=costs)
    except UserError as exc:
        assert str(exc) and "\n" not in str(exc), str(exc)
        outcome = "refused"
    return outcome


def fuzz(parts, tmp_path: Path, seed: int, cases: int) -> dict[str, int]:
    rng = random.Random(seed)
    outcomes = {"decoded": 0, "refused": 0}
    crashes: list[str] = []
    for case in range(cases):
        data, why = mutated(parts, rng)
        try:
            outcomes[run_case(data, tmp_path / "case.dsz", costs=case % 10 == 0)] += 1
        except Exception as exc:  # noqa: BLE001 - any exception but UserError is a crash
            crashes.append(f"case {case} {why}: {type(exc).__name__}: {str(exc)[:150]}")
    assert not crashes, f"{len(crashes)} of {cases} cases crashed; first ones:\n" + "\n".join(crashes[:8])
    return outcomes


def test_the_sample_file_decodes_and_reports(parts, tmp_path):
    table, layers, tensors, rest = parts
    data = sample.join(json.loads(json.dumps(table)), layers, tensors, rest)
    assert run_case(data, tmp_path / "ok.dsz", costs=True) == "decoded"


def test_structure_aware_fuzz_of_dsz_fields(parts, tmp_path):
    outcomes = fuzz(parts, tmp_path, seed=24, cases=CASES)
    assert outcomes["refused"] > CASES // 2  # most mutations must be caught, not ignored
    print(f"structure fuzz: {CASES} cases, {outcomes}")


@pytest.mark.slow
def test_structure_aware_fuzz_of_dsz_fields_long(parts, tmp_path):
    print(f"structure fuzz (slow): {SLOW_CASES} cases, {fuzz(parts, tmp_path, seed=2024, cases=SLOW_CASES)}")


@pytest.mark.parametrize("zeroed", [(0, 1), (0, 2), (1, 3), (2, 4)])
def test_report_refuses_an_incomplete_code_as_decode_does(parts, tmp_path, zeroed):
    """Code lengths partly zeroed (an incomplete code: the stream meets a code that is not
    there) with every CRC redone: the report raised a ValueError traceback (found by the
    fuzzer) while decode refused the file."""
    table, layers, tensors, rest = parts
    table = json.loads(json.dumps(table))
    tensors = {k: np.array(v) for k, v in tensors.items()}
    tensors["code_lengths"][zeroed[0]:zeroed[1]] = 0
    path = tmp_path / "incomplete.dsz"
    path.write_bytes(sample.join(table, layers, tensors, rest))
    with pytest.raises(UserError) as report_error:
        build_report(path)
    with pytest.raises(UserError) as decode_error:
        decode_model(from_bytes(path.read_bytes(), str(path)))
    assert str(report_error.value) == str(decode_error.value)


@pytest.mark.parametrize("shape", [[1, 1, 8], [1, 8, 1], [1, 1, 1]])
def test_report_costs_refuses_an_input_shape_the_model_cannot_take(parts, tmp_path, shape):
    """An input shape edited in the file (CRCs redone) that the layers cannot take: report --costs
    raised a RuntimeError traceback from the forward pass (found by the slow fuzz run)."""
    table, layers, tensors, rest = parts
    table = json.loads(json.dumps(table))
    table["model"]["input"]["shape"] = shape
    path = tmp_path / "shape.dsz"
    path.write_bytes(sample.join(table, layers, tensors, rest))
    with pytest.raises(UserError, match=r"input shape .* does not fit the model") as exc:
        build_report(path, costs=True)
    assert "\n" not in str(exc.value)
