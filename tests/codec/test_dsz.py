import dataclasses
import json
import zlib

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from safetensors.numpy import load, save

from deepshrink.codec import decode_model, encode_model, from_bytes, load_dsz, read_dsz, save_dsz, to_bytes
from deepshrink.codec.dsz import METADATA_KEY
from deepshrink.errors import UserError
from deepshrink.models import save_model
from deepshrink.prune import attach_masks


@pytest.fixture(scope="module")
def reference(compressed_shared):
    """(file bytes, decoded state dict, decoded info dict) of the shared compressed model."""
    data = to_bytes(encode_model(*compressed_shared))
    model, info = decode_model(from_bytes(data))
    return data, model.state_dict(), info.to_dict()


@pytest.fixture(scope="module")
def grid_reference(compressed_grid_shared):
    """The same as ``reference`` for a model whose classifier is stored as a linear grid."""
    data = to_bytes(encode_model(*compressed_grid_shared))
    model, info = decode_model(from_bytes(data))
    return data, model.state_dict(), info.to_dict()


def _header_size(data):
    return 8 + int.from_bytes(data[:8], "little")


def _table_of(data):
    """(metadata table, tensors) of a .dsz file; from version 5 on, the layer table is inflated
    into ``layer_columns`` and ``layers`` rows and cut from the streams (the version 4 layout)."""
    tensors = load(data)
    table = json.loads(json.loads(data[8:_header_size(data)])["__metadata__"][METADATA_KEY])
    if table["version"] >= 5:
        size = table["layers"]["bytes"]
        inner = json.loads(zlib.decompress(tensors["streams"][:size].tobytes(), -zlib.MAX_WBITS))
        tensors["streams"] = tensors["streams"][size:]
        table["layer_columns"], table["layers"] = inner["columns"], inner["rows"]
    return table, tensors


def _with_table(data, edit, fix_checksum=True, tensors_edit=None):
    """``data`` with its metadata table (as :func:`_table_of` gives it) passed through ``edit``
    (and the checksum redone), and its tensors through ``tensors_edit``; written back in the
    version 5 layout when the edited version is 5 or more."""
    table, tensors = _table_of(data)
    if tensors_edit is not None:
        tensors_edit(tensors)
    edit(table)
    version = table.get("version")
    if isinstance(version, int) and not isinstance(version, bool) and version >= 5:
        deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
        layer_table = json.dumps({"columns": table.pop("layer_columns", None), "rows": table["layers"]})
        blob = deflater.compress(layer_table.encode()) + deflater.flush()
        tensors["streams"] = np.concatenate([np.frombuffer(blob, np.uint8), tensors["streams"]])
        table["layers"] = {"bytes": len(blob), "crc32": zlib.crc32(blob)}
    if fix_checksum:
        rest = json.dumps({k: v for k, v in table.items() if k != "crc32"}, separators=(",", ":"))
        table["crc32"] = zlib.crc32(rest.encode())
    return save(tensors, metadata={METADATA_KEY: json.dumps(table, separators=(",", ":"))})


def _as_version_3(data):
    """``data`` rewritten as a version 3 file: the history uncompressed in the model entry."""
    table = json.loads(json.loads(data[8:_header_size(data)])["__metadata__"][METADATA_KEY])
    history = table["history"]["bytes"]

    def tensors_edit(tensors):
        stored = tensors["streams"][-history:].tobytes()
        table["model"]["history"] = json.loads(zlib.decompress(stored, -zlib.MAX_WBITS))
        tensors["streams"] = tensors["streams"][:-history]

    def edit(old):
        old.update(version=3, model=table["model"])
        del old["history"]

    return _with_table(data, edit, tensors_edit=tensors_edit)


def _decodes_identically_or_refuses(data, reference):
    _, state, info = reference
    try:
        model, back = decode_model(from_bytes(data))
    except UserError as exc:
        assert str(exc) and "\n" not in str(exc)
        event("refused")
        return
    event("decoded identically")
    assert back.to_dict() == info
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())


def test_file_round_trip(tmp_path, compressed_shared, reference):
    model, info = compressed_shared
    save_dsz(tmp_path / "m.dsz", model, info)
    assert (tmp_path / "m.dsz").read_bytes() == reference[0]
    decoded, back = load_dsz(tmp_path / "m.dsz")
    assert decoded.state_dict().keys() == reference[1].keys()
    assert all(torch.equal(decoded.state_dict()[k], v) for k, v in reference[1].items())
    assert back.arch == info.arch and back.to_dict() == reference[2]


def test_tensors_and_metadata_of_the_container(reference):
    tensors = load(reference[0])
    assert {k: v.dtype.name for k, v in tensors.items()} == {
        "streams": "uint8", "codebooks": "float32", "code_lengths": "uint8"}
    raw = json.loads(json.loads(reference[0][8:_header_size(reference[0])])["__metadata__"][METADATA_KEY])
    assert set(raw["layers"]) == {"bytes", "crc32"} and "layer_columns" not in raw  # the table is deflated
    table, _ = _table_of(reference[0])
    assert table["format"] == "deepshrink-dsz" and table["version"] == 5
    assert table["model"]["arch"]["name"] == "digits-cnn"
    rows = [dict(zip(table["layer_columns"], row)) for row in table["layers"]]
    assert [row["key"] for row in rows] == ["conv1.weight", "conv2.weight", "conv3.weight", "fc.weight"]
    assert [row["coding"] for row in rows] == ["float32", "huffman", "huffman", "float32"]
    assert rows[1]["index_width"] > 0 and rows[1]["symbols"] == rows[1]["index_symbols"]
    streams = sum(row["bytes"] + row["index_bytes"] for row in rows)
    assert (raw["layers"]["bytes"] + streams + table["other"]["bytes"] + table["history"]["bytes"]
            == tensors["streams"].size)
    assert "history" not in table["model"]


@pytest.mark.parametrize("edit,needle", [
    (lambda t: t.update(version=6), "version 6; this deepshrink reads versions 1, 2, 3, 4, 5"),
    (lambda t: t.update(version=True), "version True"),
    (lambda t: t.update(format="zip"), "not a .dsz file"),
    (lambda t: t["layers"][2].__setitem__(slice(0, 2), ["conv2.weight", t["layers"][1][1]]), "unknown or repeated"),
    (lambda t: t["layers"][2].__setitem__(0, "conv2.weight"), "architecture gives it"),
    (lambda t: t["layers"][2].__setitem__(0, "conv9.weight"), "not a tensor of the architecture"),
    (lambda t: t["layers"][1].__setitem__(3, t["layers"][1][3] - 1), "damaged"),
    (lambda t: t["layers"][1].__setitem__(8, 3), "malformed values table"),
    (lambda t: t["layers"][1].__setitem__(9, 13), "13 bits"),
    (lambda t: t["layers"][1].__setitem__(1, t["layers"][1][1] + 9), "architecture gives it"),
    (lambda t: t["layers"][1].__setitem__(1, "9"), "malformed layer table row"),
    (lambda t: t["layers"][1].pop(), "malformed layer table row"),
    (lambda t: t["layer_columns"].reverse(), "columns"),
    (lambda t: t.update(float_dtype="float16"), "codebooks are float32, expected float16"),
    (lambda t: t.update(bn_affine=True), "other tensors take"),
    (lambda t: t.update(bn_affine=1), "'bn_affine' must be a bool"),
    (lambda t: t["other"].update(crc32=1), "checksum of the data of other tensors"),
    (lambda t: t["history"].update(crc32=1), "checksum of the data of the model history"),
    (lambda t: t["history"].update(bytes=10**6), "streams ends before the data of the model history"),
    (lambda t: t.pop("history"), "'history' must be a dict"),
    (lambda t: t["model"]["arch"].update(name="resnet9000"), "unknown model"),
])
def test_consistent_but_wrong_edits_are_refused(reference, edit, needle):
    with pytest.raises(UserError, match=needle):
        decode_model(from_bytes(_with_table(reference[0], edit)))


def test_an_edited_architecture_cannot_reshape_a_sparse_layer(compressed):
    # conv1 stored sparse: without the numel column, more input channels would still decode
    model, info = compressed
    attach_masks(model, {"conv1": (torch.rand_like(model.conv1.weight) >= 0.5).float()})
    data = to_bytes(encode_model(model, info))
    decode_model(from_bytes(data))
    edited = _with_table(data, lambda t: t["model"]["arch"]["kwargs"].update(in_channels=2))
    with pytest.raises(UserError, match="conv1.weight holds 144 weights but the architecture gives it 288"):
        decode_model(from_bytes(edited))


def test_version_1_files_without_the_numel_column_still_decode(reference):
    def as_version_1(table):
        at = table["layer_columns"].index("numel")
        table.update(version=1, layer_columns=[c for c in table["layer_columns"] if c != "numel"])
        del table["bn_affine"]
        for row in table["layers"]:
            del row[at]

    model, info = decode_model(from_bytes(_with_table(_as_version_3(reference[0]), as_version_1)))
    assert info.to_dict() == reference[2]
    assert all(torch.equal(model.state_dict()[k], v) for k, v in reference[1].items())


def test_float16_files_store_float16_codebooks_and_version_2_files_float32_ones(compressed_shared):
    model, info = compressed_shared
    data = to_bytes(encode_model(model, info, float_dtype="float16"))
    full = to_bytes(encode_model(model, info, float_dtype="float32"))
    codebooks = load(data)["codebooks"]
    assert codebooks.dtype.name == "float16" and codebooks.size == load(full)["codebooks"].size > 0
    decoded, _ = decode_model(from_bytes(data))
    centroids = set(codebooks.astype("float32").tolist())
    assert set(decoded.conv2.weight.unique().tolist()) <= centroids | {0.0}  # the rounded centroids

    def as_version_2(tensors):
        tensors["codebooks"] = tensors["codebooks"].astype("float32")

    def table_2(table):
        table.update(version=2, codebooks_crc32=zlib.crc32(codebooks.astype("float32").tobytes()))

    old, _ = decode_model(from_bytes(_with_table(_as_version_3(data), table_2, tensors_edit=as_version_2)))
    assert all(torch.equal(old.state_dict()[k], v) for k, v in decoded.state_dict().items())
    with pytest.raises(UserError, match="codebooks are float16, expected float32"):
        from_bytes(_with_table(data, lambda t: t.update(version=2)))


def test_version_3_files_with_the_history_uncompressed_still_decode(reference):
    data = _as_version_3(reference[0])
    model, info = decode_model(from_bytes(data))
    assert info.history and info.to_dict() == reference[2]
    assert all(torch.equal(model.state_dict()[k], v) for k, v in reference[1].items())


def test_a_real_history_takes_fewer_bytes_than_in_version_3(compressed_shared):
    model, info = compressed_shared
    records = [{"stage": "train", "epochs": 30, "optimizer": "sgd", "lr": 0.05, "test_top1": 0.986111},
               {"stage": "prune", "criterion": "magnitude", "target_sparsity": 0.8, "scope": "layer",
                "layers": {"conv2": 0.799913, "conv3": 0.800022}, "test_top1": 0.980556},
               {"stage": "quantize", "method": "kmeans", "bits": 4, "init": "linear", "exclude": [],
                "layers": ["conv1", "conv2", "conv3", "fc"], "test_top1": 0.983333}]
    data = to_bytes(encode_model(model, dataclasses.replace(info, history=records)))
    assert len(data) < len(_as_version_3(data)) - 100
    assert decode_model(from_bytes(data))[1].history[:3] == records


def _deflated(data):
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return deflater.compress(data) + deflater.flush()


@pytest.mark.parametrize("stored", [
    b"", b"not deflate", _deflated(b'{"stage": "train"}'), _deflated(b"[1, 2]"), _deflated(b"[{"),
    _deflated(b"[]")[:-1], _deflated(b"[]") + b"x", _deflated(b" " * (2 << 20) + b"[]"),
])
def test_a_damaged_history_is_refused_even_with_matching_checksums(reference, stored):
    data = reference[0]
    table = json.loads(json.loads(data[8:_header_size(data)])["__metadata__"][METADATA_KEY])
    old = table["history"]["bytes"]

    def tensors_edit(tensors):
        tensors["streams"] = np.concatenate([tensors["streams"][:-old], np.frombuffer(stored, np.uint8)])

    def edit(t):
        t["history"].update(bytes=len(stored), crc32=zlib.crc32(stored))

    with pytest.raises(UserError, match="unreadable model history"):
        from_bytes(_with_table(data, edit, tensors_edit=tensors_edit))


def test_an_edit_without_a_new_checksum_is_refused(reference):
    data = _with_table(reference[0], lambda t: t["model"]["input"].update(mean=[0.5]), fix_checksum=False)
    with pytest.raises(UserError, match="checksum of the metadata"):
        from_bytes(data)


def test_files_that_are_not_dsz(tmp_path, compressed_shared):
    save_model(tmp_path / "m.safetensors", *compressed_shared)
    with pytest.raises(UserError, match="not a .dsz file"):
        read_dsz(tmp_path / "m.safetensors")
    with pytest.raises(UserError, match="not found"):
        read_dsz(tmp_path / "none.dsz")
    (tmp_path / "empty.dsz").write_bytes(b"")
    with pytest.raises(UserError, match="not a .dsz file"):
        read_dsz(tmp_path / "empty.dsz")


def _leaves(node, path=()):
    if isinstance(node, dict):
        return [leaf for key, value in node.items() for leaf in _leaves(value, path + (key,))]
    if isinstance(node, list):
        return [leaf for i, value in enumerate(node) for leaf in _leaves(value, path + (i,))]
    return [path]


def _set_leaf(table, path, value):
    for key in path[:-1]:
        table = table[key]
    table[path[-1]] = value if not callable(value) else value(table[path[-1]])


@st.composite
def corrupted(draw, data):
    header = _header_size(data)
    kind = draw(st.sampled_from(["truncate", "flip", "flip-header", "byte", "bytes", "table", "table-raw"]))
    if kind == "truncate":
        return data[:draw(st.integers(0, len(data) - 1))]
    if kind in ("flip", "flip-header"):
        bit = draw(st.integers(0, 8 * (header if kind == "flip-header" else len(data)) - 1))
        out = bytearray(data)
        out[bit // 8] ^= 1 << (bit % 8)
        return bytes(out)
    if kind in ("byte", "bytes"):
        out = bytearray(data)
        for _ in range(draw(st.integers(1, 1 if kind == "byte" else 8))):
            out[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        return bytes(out)
    # a structural edit of the (inflated) layer table with a correct checksum, or any edit without one
    table, _ = _table_of(data)
    paths = [p for p in _leaves(table) if kind == "table-raw" or p[0] not in ("model", "crc32")]
    path = draw(st.sampled_from(paths))
    value = draw(st.one_of(st.integers(-3, 2**20), st.text(max_size=4), st.none(), st.booleans(),
                           st.sampled_from([lambda v: v + 1 if isinstance(v, int) else v,
                                            lambda v: v - 1 if isinstance(v, int) else v])))
    return _with_table(data, lambda t: _set_leaf(t, path, value), fix_checksum=kind == "table")


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                     HealthCheck.too_slow])
@given(st.data())
def test_corrupted_files_decode_identically_or_raise_user_error(reference, data):
    _decodes_identically_or_refuses(data.draw(corrupted(reference[0])), reference)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                    HealthCheck.too_slow])
@given(st.data())
def test_corrupted_files_with_grid_layers_decode_identically_or_raise_user_error(grid_reference, data):
    _decodes_identically_or_refuses(data.draw(corrupted(grid_reference[0])), grid_reference)


def test_grid_layers_round_trip_and_need_version_5(compressed_grid_shared, grid_reference):
    model, _ = compressed_grid_shared
    data, state, _ = grid_reference
    table, _ = _table_of(data)
    codings = {row[0]: row[2] for row in table["layers"]}
    assert codings == {"conv1.weight": "float32", "conv2.weight": "huffman", "conv3.weight": "huffman",
                       "fc.weight": "grid"}
    fc_row = next(row for row in table["layers"] if row[0] == "fc.weight")
    assert fc_row[7:9] == [10, 8]  # 10 scales (one per class), 8 levels
    assert torch.equal(state["fc.weight"], model.fc.weight)
    with pytest.raises(UserError, match="layer fc.weight has unknown coding 'grid'"):
        from_bytes(_with_table(data, lambda t: t.update(version=4)))


@pytest.mark.parametrize("stored", [
    b"", b"not deflate", _deflated(b'{"columns": []}'), _deflated(b'{"columns": [], "rows": {}}'),
    _deflated(b"[1, 2]"), _deflated(b"{}") + b"x", _deflated(b" " * (2 << 20) + b"{}"),
    _deflated(b"[" * 100_000 + b"]" * 100_000),
])
def test_a_damaged_layer_table_is_refused_even_with_matching_checksums(reference, stored):
    data = reference[0]
    raw = json.loads(json.loads(data[8:_header_size(data)])["__metadata__"][METADATA_KEY])
    old = raw["layers"]["bytes"]
    raw["layers"].update(bytes=len(stored), crc32=zlib.crc32(stored))
    raw["crc32"] = zlib.crc32(json.dumps({k: v for k, v in raw.items() if k != "crc32"},
                                         separators=(",", ":")).encode())
    tensors = load(data)
    tensors["streams"] = np.concatenate([np.frombuffer(stored, np.uint8), tensors["streams"][old:]])
    edited = save(tensors, metadata={METADATA_KEY: json.dumps(raw, separators=(",", ":"))})
    with pytest.raises(UserError, match="unreadable layer table|'rows' must be a list|'columns' must be a list"):
        from_bytes(edited)


def test_version_4_files_still_decode(reference):
    model, _ = decode_model(from_bytes(_with_table(reference[0], lambda t: t.update(version=4))))
    assert all(torch.equal(model.state_dict()[k], v) for k, v in reference[1].items())


def test_a_grid_file_is_smaller_than_its_codebook_would_be(compressed_grid_shared):
    encoded = encode_model(*compressed_grid_shared)
    fc = next(layer for layer in encoded.layers if layer.key == "fc.weight")
    assert fc.codebook.shape == (10, 9) and fc.codebook_bytes == 10 * 4 + 4  # scales + 10 x 3-bit offsets
    as_codebook = dataclasses.replace(encoded, layers=[dataclasses.replace(layer, grid=None)
                                                        for layer in encoded.layers])
    saved = len(to_bytes(as_codebook)) - len(to_bytes(encoded))
    assert abs(saved - (10 * 9 * 4 - fc.codebook_bytes)) <= 16  # the codebook's bytes, within header padding
