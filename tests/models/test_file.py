import json

import pytest
import torch

from deepshrink.errors import UserError
from deepshrink.models import InputSpec, ModelInfo, build_model, load_model, make_spec, read_info, save_model


def _saved(tmp_path, name="digits-cnn"):
    spec = make_spec(name, num_classes=10, in_channels=1, image_size=8)
    torch.manual_seed(0)
    model = build_model(spec)
    info = ModelInfo(spec, InputSpec((1, 8, 8), (0.5,), (0.25,)), classes=[str(i) for i in range(10)],
                     dataset="digits", history=[{"stage": "train", "epochs": 1}])
    path = save_model(tmp_path / "m.safetensors", model, info)
    return model, info, path


def test_round_trip_rebuilds_architecture_and_weights(tmp_path):
    model, info, path = _saved(tmp_path)
    loaded, back = load_model(path)
    assert back == info
    x = torch.randn(4, 1, 8, 8)
    model.eval()
    assert torch.equal(loaded(x), model(x))
    assert not loaded.training


def test_file_is_plain_safetensors_with_json_metadata(tmp_path):
    from safetensors import safe_open

    _, _, path = _saved(tmp_path)
    with safe_open(str(path), "pt") as handle:
        meta = json.loads(handle.metadata()["deepshrink"])
    assert meta["format"] == "deepshrink-model" and meta["arch"]["name"] == "digits-cnn"
    data = path.read_bytes()
    assert not data.startswith((b"\x80", b"PK"))  # not a pickle, nor torch.save's zip archive
    # safetensors: an 8-byte little-endian header length, the JSON header, then the raw tensor bytes
    header = int.from_bytes(data[:8], "little")
    assert data[8:9] == b"{" and json.loads(data[8:8 + header])["__metadata__"]["deepshrink"]


def test_errors_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_model(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(UserError, match="not a model file"):
        read_info(junk)
    from safetensors.torch import save_file

    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.ones(2)}, str(plain))
    with pytest.raises(UserError, match="not a deepshrink model file"):
        load_model(plain)


def test_wrong_architecture_and_version_are_named(tmp_path):
    _, info, path = _saved(tmp_path)
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(path))
    other = dict(info.to_dict(), arch=make_spec("lenet5", in_channels=1, image_size=8).to_dict())
    save_file(tensors, str(tmp_path / "other.safetensors"), metadata={"deepshrink": json.dumps(other)})
    with pytest.raises(UserError, match="does not fit its architecture"):
        load_model(tmp_path / "other.safetensors")
    future = dict(info.to_dict(), version=99)
    save_file(tensors, str(tmp_path / "future.safetensors"), metadata={"deepshrink": json.dumps(future)})
    with pytest.raises(UserError, match="version 99"):
        load_model(tmp_path / "future.safetensors")


def test_truncated_file_is_a_user_error(tmp_path):
    _, _, path = _saved(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    with pytest.raises(UserError, match="cannot read the tensors of .*m.safetensors"):
        load_model(path)
