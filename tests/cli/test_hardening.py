"""Hostile and broken inputs (issue 24): each is one line on stderr and exit code 2, with bounded
memory and time, and nothing half-written."""

from __future__ import annotations

import errno
import json
import os
import resource
import stat
import tempfile

import numpy as np
import pytest
import torch
from safetensors import SafetensorError

from deepshrink.cli import main
from deepshrink.codec import encode_file
from deepshrink.models import InputSpec, ModelInfo, build_model, make_spec, save_model
from deepshrink.errors import UserError
from deepshrink.pipeline.recipe import load_recipe, parse_recipe

BILLION_LAUGHS = """name: x
stages: &f [&e [&d [&c [&b [&a [x, x, x, x, x, x, x, x, x], *a, *a, *a, *a, *a, *a, *a, *a], *b, *b, *b, *b, *b, *b, *b, *b],
  *c, *c, *c, *c, *c, *c, *c, *c], *d, *d, *d, *d, *d, *d, *d, *d], *e, *e, *e, *e, *e, *e, *e, *e, *e]
"""


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A small model file and its .dsz."""
    root = tmp_path_factory.mktemp("hostile")
    spec = make_spec("digits-cnn", num_classes=4, in_channels=3, image_size=16)
    torch.manual_seed(0)
    save_model(root / "model.safetensors", build_model(spec),
               ModelInfo(spec, InputSpec((3, 16, 16), (0.5,) * 3, (0.2,) * 3), dataset="synthetic"))
    encode_file(root / "model.safetensors", root / "model.dsz")
    return root


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


# --- recipes -------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, message", [
    (BILLION_LAUGHS, "line 2: anchors and aliases"),
    ("name: &x [*x]\n", "line 1: anchors and aliases"),
    ("name: x\nout: &o runs\n", "line 2: anchors and aliases"),
    ("name: " + "[" * 5000 + "]" * 5000 + "\n", "nested deeper than"),
    ("name:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 200)), "nested deeper than"),
    ("stages: [" + "1, " * 20_000 + "]\n", "more than 10000 values"),
])
def test_recipe_bombs_are_refused_before_they_grow(text, message):
    with pytest.raises(UserError, match=message.replace("[", r"\[")):
        parse_recipe(text, source="bomb.yaml")


def test_huge_recipe_is_refused_without_reading_it_all(tmp_path, capsys):
    big = tmp_path / "big.yaml"
    with open(big, "w") as handle:
        handle.write("stages:\n")
        handle.write("  # padding\n" * 200_000)
    assert main(["run", str(big)]) == 2
    assert "larger than 1 MB" in _one_error_line(capsys)
    with pytest.raises(UserError, match="larger than 1 MB"):
        load_recipe("/dev/zero")


def test_recipe_bomb_through_the_command_line(tmp_path, capsys):
    path = tmp_path / "bomb.yaml"
    path.write_text(BILLION_LAUGHS)
    assert main(["run", str(path)]) == 2
    assert "anchors and aliases" in _one_error_line(capsys)


# --- non-finite training settings ----------------------------------------------------------------

@pytest.mark.parametrize("flag", ["--lr", "--weight-decay", "--gamma", "--warmup-epochs"])
def test_train_refuses_infinite_settings_naming_the_flag(flag, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--model", "digits-cnn", "--data", "synthetic", "--out", str(out), "--epochs", "1",
                 flag, "inf"]) == 2
    assert _one_error_line(capsys).startswith(f"deepshrink: error: {flag} must be a finite number")
    assert not out.exists()


def test_recipe_names_the_key_of_an_infinite_learning_rate(tmp_path):
    text = "name: x\nout: runs\ndata: {name: synthetic}\nmodel: {zoo: digits-cnn}\nstages:\n  - train: {epochs: 1, lr: .inf}\n"
    with pytest.raises(UserError, match=r"line 6: stages\[0\]\.train\.lr: must be a finite number > 0, got inf"):
        parse_recipe(text, source="r.yaml")


# --- output paths --------------------------------------------------------------------------------

def _commands(model: str, dsz: str, out: str) -> dict[str, list[str]]:
    return {"prune": ["prune", model, "--sparsity", "0.5", "--out", out],
            "quantize": ["quantize", model, "--method", "linear", "--bits", "4", "--out", out],
            "encode": ["encode", model, "--out", out],
            "decode": ["decode", dsz, "--out", out]}


@pytest.mark.parametrize("command", ["prune", "quantize", "encode", "decode"])
def test_out_equal_to_the_input_is_refused_and_the_input_kept(command, files, tmp_path, capsys):
    model, dsz = tmp_path / "model.safetensors", tmp_path / "model.dsz"
    for source in (files / "model.safetensors", files / "model.dsz"):
        (tmp_path / source.name).write_bytes(source.read_bytes())
    source = dsz if command == "decode" else model
    before = source.read_bytes()
    os.symlink(source, tmp_path / "alias")  # the same file under another name
    for out in (source, tmp_path / "alias"):
        assert main(_commands(str(model), str(dsz), str(out))[command]) == 2
        assert "it is the input" in _one_error_line(capsys)
    assert source.read_bytes() == before


def test_import_to_its_own_checkpoint_is_refused(tmp_path, capsys):
    checkpoint = tmp_path / "resnet20.th"
    checkpoint.write_bytes(b"not really a checkpoint")
    assert main(["import-pretrained", str(checkpoint), "--model", "resnet20", "--out", str(checkpoint)]) == 2
    assert "it is the input" in _one_error_line(capsys)
    assert checkpoint.read_bytes() == b"not really a checkpoint"


@pytest.mark.parametrize("command", ["prune", "encode", "decode"])
def test_an_out_that_is_not_a_regular_file_is_refused(command, files, tmp_path, capsys):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    cases = {tmp_path: "is a directory", fifo: "not a regular file"}
    for out, message in cases.items():
        assert main(_commands(str(files / "model.safetensors"), str(files / "model.dsz"), str(out))[command]) == 2
        assert message in _one_error_line(capsys)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)  # not replaced by a regular file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo"]


def test_train_into_a_file_is_refused_before_training(tmp_path, capsys):
    out = tmp_path / "not-a-folder"
    out.write_text("mine")
    assert main(["train", "--model", "digits-cnn", "--data", "synthetic", "--out", str(out), "--epochs", "50"]) == 2
    assert "is not a folder" in _one_error_line(capsys)
    assert out.read_text() == "mine"


def test_a_full_disk_is_one_line_and_leaves_nothing(files, tmp_path, capsys, monkeypatch):
    def full(*args, **kwargs):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr("deepshrink.models.file.save_file", full)
    out = tmp_path / "decoded.safetensors"
    assert main(["decode", str(files / "model.dsz"), "--out", str(out)]) == 2
    assert _one_error_line(capsys) == f"deepshrink: error: cannot write {out}: No space left on device (os error 28)"
    assert list(tmp_path.iterdir()) == []


def test_a_read_only_folder_is_one_line(files, tmp_path, capsys, monkeypatch):
    def denied(*args, dir=None, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", os.path.join(dir, ".x.tmp"))

    monkeypatch.setattr(tempfile, "mkstemp", denied)
    out = tmp_path / "model.dsz"
    assert main(["encode", str(files / "model.safetensors"), "--out", str(out)]) == 2
    assert _one_error_line(capsys) == f"deepshrink: error: cannot write {out}: Permission denied: {tmp_path}/.x.tmp"


# --- tracebacks that became one line; memory before validation -----------------------------------

def _rewrite_metadata(source, target, change) -> None:
    """Copy the model file ``source`` to ``target`` with its deepshrink JSON changed by ``change``
    (which edits the dict in place or returns the new JSON text)."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(source), "pt") as handle:
        metadata = handle.metadata()
    data = json.loads(metadata["deepshrink"])
    result = change(data)
    metadata["deepshrink"] = result if isinstance(result, str) else json.dumps(data)
    save_file(load_file(str(source)), str(target), metadata=metadata)


def _set(path: str, value):
    def change(data):
        *parents, last = path.split(".")
        node = data
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        node[last] = value
    return change


@pytest.fixture(scope="module")
def quantized(files):
    for method in ("linear", "kmeans"):
        assert main(["quantize", str(files / "model.safetensors"), "--method", method, "--bits", "4",
                     "--out", str(files / f"{method}.safetensors")]) == 0
    return files


@pytest.mark.parametrize("source, change, message", [
    ("linear", _set("parametrizations.0.args.foo", 1), "unknown argument foo"),
    ("linear", _set("parametrizations.0.args.bits", "x"), "bits must be int, got 'x'"),
    ("linear", _set("parametrizations.0.args", [4]), "malformed linear-quant quantizer record"),
    ("linear", _set("parametrizations.0.args.bits", 31), "bits must be one of 2, 3, 4, 5, 6, 7, 8, 16, got 31"),
    ("kmeans", _set("parametrizations.0.args.bits", 31), "bits must be one of 2, 3, 4, 5, 6, 7, 8, got 31"),
    ("model", lambda data: '{"a":' * 100_000 + "1" + "}" * 100_000, "nested too deeply"),
    ("model", _set("input.shape", [3, -16, 16]), "input shape must be (C, H, W) of positive sizes"),
    ("model", _set("input.shape", [3, 100_000, 100_000]), "at most 16777216 values"),
    ("model", _set("arch.kwargs.num_classes", 10 ** 9), "the architecture needs (1000000000, "),
])
@pytest.mark.parametrize("command", [["report", "--costs"], ["bench", "--repeats", "1"]])
def test_hostile_model_files_are_one_line_without_allocating(source, change, message, command, quantized, tmp_path,
                                                             capsys):
    hostile = tmp_path / "hostile.safetensors"
    _rewrite_metadata(quantized / f"{source}.safetensors", hostile, change)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert main([command[0], str(hostile), *command[1:]]) == 2
    assert message in _one_error_line(capsys)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 500_000  # KiB: nothing large allocated


def test_report_refuses_over_subscribed_code_lengths_like_decode(quantized, tmp_path, capsys):
    from deepshrink.codec.dsz import read_dsz, write_dsz

    encode_file(quantized / "kmeans.safetensors", tmp_path / "k.dsz")
    encoded = read_dsz(tmp_path / "k.dsz")
    coded = next(layer.values for layer in encoded.layers if hasattr(layer.values, "lengths"))
    coded.lengths[:] = 1  # not a prefix code; the writer recomputes every CRC
    write_dsz(tmp_path / "over.dsz", encoded)
    for argv in (["report", str(tmp_path / "over.dsz")], ["decode", str(tmp_path / "over.dsz"), "--out", str(tmp_path / "o")]):
        assert main(argv) == 2
        assert "over-subscribed" in _one_error_line(capsys)


def test_model_options_the_dataset_sets_are_refused(tmp_path, capsys):
    assert main(["train", "--model", "digits-cnn", "--model-opt", "num_classes=5", "--data", "synthetic",
                 "--out", str(tmp_path / "run"), "--epochs", "1"]) == 2
    assert "num_classes is set from the dataset" in _one_error_line(capsys)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_device_that_is_not_here_is_one_line(files, tmp_path, capsys):
    assert main(["eval", str(files / "model.safetensors"), "--data", "synthetic", "--device", "cuda"]) == 2
    assert "no cuda device is available here" in _one_error_line(capsys)
    assert main(["train", "--model", "digits-cnn", "--data", "synthetic", "--out", str(tmp_path / "r"),
                 "--epochs", "1", "--device", "cuda"]) == 2
    assert "no cuda device is available here" in _one_error_line(capsys)


def test_an_infinite_size_budget_names_the_flag(files, capsys):
    assert main(["quantize", str(files / "model.safetensors"), "--method", "linear", "--mixed-budget-kb", "inf",
                 "--data", "synthetic", "--out", str(files / "never.safetensors")]) == 2
    assert _one_error_line(capsys) == "deepshrink: error: --mixed-budget-kb must be a finite number > 0, got inf"


# --- zero-stride views in a published checkpoint -------------------------------------------------

def _resnet20_state() -> dict[str, torch.Tensor]:
    return build_model(make_spec("resnet20", num_classes=10, in_channels=3, image_size=32)).state_dict()


@pytest.mark.parametrize("key, hostile, message", [
    ("conv1.weight", torch.zeros(1).expand(16, 3, 3, 3), "tensor conv1.weight of shape (16, 3, 3, 3) is a zero-stride"),
    ("linear.weight", torch.zeros(64).expand(10 ** 12, 64), "tensor linear.weight of shape (1000000000000, 64)"),
    ("linear.weight", torch.zeros(640).as_strided((10, 64), (1, 1)), "overlapping view"),
    ("linear.weight", torch.zeros(64, 10).t(), None),  # a transposed view is plain: accepted
])
def test_a_zero_stride_checkpoint_tensor_is_refused_before_it_grows(key, hostile, message, tmp_path, capsys):
    state = _resnet20_state()
    state[key] = hostile
    checkpoint, out = tmp_path / "hostile.th", tmp_path / "out.safetensors"
    torch.save({"state_dict": state}, checkpoint)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    code = main(["import-pretrained", str(checkpoint), "--model", "resnet20", "--out", str(out)])
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 200_000  # KiB
    if message is None:
        assert code == 0
        return
    assert code == 2 and not out.exists()
    assert message in _one_error_line(capsys)


def test_checkpoint_tensors_that_share_one_storage_many_times_are_refused(tmp_path):
    from deepshrink.models.pretrained import load_pretrained_state

    block = torch.zeros(1024, 1024)  # 4 MB on disk, viewed by 300 keys: 1.2 GB if copied
    torch.save({f"k{i}": block[:] for i in range(300)}, tmp_path / "shared.th")
    with pytest.raises(UserError, match="its tensors hold 1258291200 bytes, more than the file's"):
        load_pretrained_state(tmp_path / "shared.th")


# --- .dsz symbol counts beyond the data ----------------------------------------------------------

def _edit_layer_row(source, target, key, **columns) -> None:
    """Copy the .dsz ``source`` to ``target`` with the layer table row of ``key`` changed
    (``columns``: column name -> value), re-deflated and every CRC recomputed as the writer does."""
    import zlib
    from safetensors.numpy import load, save
    from deepshrink.codec import dsz

    data = source.read_bytes()
    tensors = load(data)
    table = json.loads(json.loads(data[8:8 + int.from_bytes(data[:8], "little")])["__metadata__"][dsz.METADATA_KEY])
    streams = tensors["streams"].tobytes()
    size = table["layers"]["bytes"]
    layers = json.loads(zlib.decompressobj(-zlib.MAX_WBITS).decompress(streams[:size]))
    row = next(row for row in layers["rows"] if row[0] == key)
    for name, value in columns.items():
        row[layers["columns"].index(name)] = value
    deflated = dsz._deflate(dsz._compact(layers).encode())
    tensors["streams"] = np.frombuffer(deflated + streams[size:], dtype=np.uint8)
    table["layers"] = {"bytes": len(deflated), "crc32": zlib.crc32(deflated)}
    table["crc32"] = dsz._table_crc(table)
    target.write_bytes(save(tensors, metadata={dsz.METADATA_KEY: dsz._compact(table)}))


@pytest.fixture(scope="module")
def sparse_kmeans(files):
    """A pruned then k-means-quantized model's .dsz (sparse coded layers)."""
    assert main(["prune", str(files / "model.safetensors"), "--sparsity", "0.9", "--out", str(files / "p.safetensors")]) == 0
    assert main(["quantize", str(files / "p.safetensors"), "--method", "kmeans", "--bits", "4",
                 "--out", str(files / "pk.safetensors")]) == 0
    encode_file(files / "pk.safetensors", files / "pk.dsz")
    return files / "pk.dsz"


@pytest.mark.parametrize("source, columns, message", [
    ("model.dsz", {"symbols": 10 ** 12}, "layer conv2.weight declares 1000000000000 stored values for 4608 weights (dense)"),
    ("model.dsz", {"symbols": 4608 * 4}, "declares 18432 stored values for 4608 weights (dense)"),
    ("pk.dsz", {"symbols": 10 ** 12, "index_symbols": 10 ** 12}, "declares 1000000000000 stored values for 4608 weights (sparse)"),
    ("pk.dsz", {"symbols": 4000, "index_symbols": 4000}, "is damaged (values: 231 bytes cannot hold 4000 symbols)"),  # within bounds
    ("pk.dsz", {"index_symbols": 4000}, "declares 4000 relative indices for"),
])
@pytest.mark.parametrize("command", ["decode", "report", "eval"])
def test_dsz_symbol_counts_beyond_the_data_are_refused_at_read(source, columns, message, command, quantized,
                                                               sparse_kmeans, tmp_path, capsys):
    encode_file(quantized / "kmeans.safetensors", quantized / "model.dsz") if source == "model.dsz" else None
    hostile = tmp_path / "hostile.dsz"
    _edit_layer_row(quantized / source, hostile, "conv2.weight", **columns)
    argv = {"decode": ["decode", str(hostile), "--out", str(tmp_path / "out.safetensors")],
            "report": ["report", str(hostile)], "eval": ["eval", str(hostile), "--data", "synthetic"]}[command]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert main(argv) == 2
    assert message in _one_error_line(capsys)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 100_000  # KiB


def test_an_unedited_row_still_reads(quantized, sparse_kmeans, tmp_path, capsys):
    _edit_layer_row(sparse_kmeans, tmp_path / "same.dsz", "conv2.weight")
    assert main(["report", str(tmp_path / "same.dsz")]) == 0


def test_an_absurd_finite_size_budget_is_capped_not_allocated(files, tmp_path, capsys):
    out = tmp_path / "mixed.safetensors"
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert main(["quantize", str(files / "model.safetensors"), "--method", "linear", "--mixed-budget-kb", "1e300",
                 "--data", "synthetic", "--out", str(out)]) == 0
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 200_000  # KiB
    assert main(["quantize", str(files / "model.safetensors"), "--method", "linear", "--mixed-budget-kb", "1e307",
                 "--data", "synthetic", "--out", str(tmp_path / "never.safetensors")]) == 2
    assert _one_error_line(capsys).endswith("--mixed-budget-kb must be at most 1e300, got 1e+307")
