"""Non-finite weights (issue 24, item 3): encode refuses them, naming the tensor; reading and
decoding refuse a .dsz whose codebooks or float tensors hold NaN or inf, even with every CRC
recomputed (one line, exit 2 through the CLI)."""

import importlib.util
import math
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from deepshrink.codec import decode_model, encode_model, from_bytes, save_dsz
from deepshrink.errors import UserError
from deepshrink.models import save_model

_spec = importlib.util.spec_from_file_location("dsz_sample", Path(__file__).parents[1] / "fuzz" / "dsz_sample.py")
sample = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sample)


@pytest.fixture(scope="module")
def model_info():
    return sample.sample_model()


@pytest.fixture(scope="module")
def data(model_info):
    return sample.sample_dsz()


def _one_line(exc):
    assert str(exc) and "\n" not in str(exc)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("key", ["conv1.weight", "fc.weight", "bn2.bias", "bn1.running_var", "fc.bias"])
def test_encode_refuses_non_finite_weights(tmp_path, model_info, key, value):
    model, info = sample.sample_model()
    module_name, _, attr = key.rpartition(".")
    module = model.get_submodule(module_name)
    with torch.no_grad():
        target = module.parametrizations[attr].original if hasattr(module, "parametrizations") and \
            attr in module.parametrizations else getattr(module, attr)
        target.view(-1)[target.abs().argmax()] = value  # the largest weight: not pruned
    with pytest.raises(UserError, match=f"{key}.*non-finite") as exc:
        save_dsz(tmp_path / "m.dsz", model, info)
    _one_line(exc.value)
    assert not (tmp_path / "m.dsz").exists()


def test_encode_refuses_a_non_finite_quantized_weight(model_info):
    model, info = sample.sample_model()
    with torch.no_grad():  # a NaN centroid
        model.conv2.parametrizations.weight[-1].centroids[0] = math.nan
    with pytest.raises(UserError, match="conv2.weight.*non-finite"):
        encode_model(model, info)


def _edit(data, tensors_edit=None, rows_edit=None, rest_edit=None):
    table, layers, tensors, rest = sample.split(data)
    tensors = {k: np.array(v) for k, v in tensors.items()}
    if tensors_edit:
        tensors_edit(tensors)
    if rows_edit:
        rows_edit(layers)
    if rest_edit:
        rest = rest_edit(table, layers, rest)
    return sample.join(table, layers, tensors, rest)


def _refused(data, needle):
    with pytest.raises(UserError, match=needle) as exc:
        decode_model(from_bytes(data))
    _one_line(exc.value)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_a_non_finite_codebook_entry_is_refused(data, value):
    def edit(tensors):
        tensors["codebooks"][3] = value
    _refused(_edit(data, edit), "codebook entry is non-finite")


def test_the_untouched_sample_decodes(data):
    decode_model(from_bytes(data))


def _float_layer_edit(value):
    """A float32 layer (conv1, dense or sparse) with its first stored value set to ``value``."""
    def rest_edit(table, layers, rest):
        columns = layers["columns"]
        offset = 0
        for row in layers["rows"]:
            fields = dict(zip(columns, row))
            if fields["coding"] == "float32":
                start = offset
                raw = bytearray(rest[start:start + fields["bytes"]])
                raw[0:4] = struct.pack("<f", value)
                row[columns.index("crc32")] = zlib.crc32(bytes(raw))
                return rest[:start] + bytes(raw) + rest[start + fields["bytes"]:]
            offset += fields["bytes"] + fields["index_bytes"]
        raise AssertionError("no float32 layer")
    return rest_edit


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_a_non_finite_float_layer_is_refused(data, value):
    _refused(_edit(data, rest_edit=_float_layer_edit(value)), "conv1.weight holds non-finite")


@pytest.mark.parametrize("value", [math.nan, -math.inf])
def test_a_non_finite_other_tensor_is_refused(data, value):
    def rest_edit(table, layers, rest):
        coded = sum(dict(zip(layers["columns"], r))["bytes"] + dict(zip(layers["columns"], r))["index_bytes"]
                    for r in layers["rows"])
        other = bytearray(rest[coded:coded + table["other"]["bytes"]])
        other[0:4] = struct.pack("<f", value)  # conv1.bias, the first other tensor
        table["other"]["crc32"] = zlib.crc32(bytes(other))
        return rest[:coded] + bytes(other) + rest[coded + len(other):]
    _refused(_edit(data, rest_edit=rest_edit), "non-finite")


def test_the_cli_refuses_non_finite_files_with_exit_2(tmp_path, data, model_info):
    bad = tmp_path / "bad.dsz"
    bad.write_bytes(_edit(data, lambda t: t["codebooks"].__setitem__(0, np.nan)))
    model, info = sample.sample_model()
    with torch.no_grad():
        model.fc.bias[0] = math.inf
    model_file = tmp_path / "nan.safetensors"
    save_model(model_file, model, info)
    for args in (["decode", str(bad), "--out", str(tmp_path / "out.safetensors")], ["report", str(bad)],
                 ["encode", str(model_file), "--out", str(tmp_path / "out.dsz")]):
        result = subprocess.run([sys.executable, "-m", "deepshrink", *args], capture_output=True, text=True,
                                env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
        assert result.returncode == 2, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and "non-finite" in result.stderr, result.stderr
