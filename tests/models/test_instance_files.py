"""Model files and .dsz files of a user's own network (not in the zoo), saved without info and
loaded into a fresh instance of its class: masks, quantizers, activation quantizers and resized
layers come back, outputs bit-identical."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from deepshrink.codec import load_dsz, read_dsz, save_dsz
from deepshrink.errors import UserError
from deepshrink.models import load_model, read_info, save_model
from deepshrink.prune import mask_method, prunable_layers, prune_layers
from deepshrink.quant import QuantConfig, calibrate_activations, quantize_

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "builders"))
from userzoo.nets import UserNet  # noqa: E402

from deepshrink.prune.structured import StructuredConfig as _Structured
from deepshrink.prune.structured import prune_channels  # noqa: E402

X = torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(1))


def _fresh(seed: int = 123) -> UserNet:
    torch.manual_seed(seed)  # a different initialisation than the saved model's
    return UserNet()


def _trained_looking() -> UserNet:
    """A UserNet with non-trivial BatchNorm statistics."""
    model = _fresh(0)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(16, 1, 8, 8))
    return model.eval()


def _compressed(model: UserNet, method: str = "kmeans", activation_bits: int | None = None) -> UserNet:
    """Prune 60 % of every selected layer, then quantize (k-means 4 bits, or linear 8 bits)."""
    names = list(prunable_layers(model))
    prune_layers(model, names, mask_method("magnitude"), 0.6)
    config = QuantConfig(method=method, bits=4 if method == "kmeans" else 8, activation_bits=activation_bits)
    quantize_(model, config)
    if activation_bits:
        calibrate_activations(model, [X])
    return model.eval()


def _output(model) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(X)


def test_model_file_without_info_loads_into_a_fresh_instance(tmp_path):
    model = _compressed(_trained_looking(), "linear", activation_bits=8)
    path = save_model(tmp_path / "mine.safetensors", model)
    info = read_info(path)
    assert info.arch is None and info.input is None
    assert info.parametrizations and info.activation_quantizers and "depthwise" in info.modules
    loaded, back = load_model(path, model=_fresh())
    assert torch.equal(_output(loaded), _output(model))
    assert back.parametrizations == info.parametrizations  # masks and quantizers re-attached


def test_dsz_without_info_is_bit_identical_after_prune_and_quantize(tmp_path):
    model = _compressed(_trained_looking())
    save_dsz(tmp_path / "mine.dsz", model)
    fresh = _fresh()
    loaded, info = load_dsz(tmp_path / "mine.dsz", model=fresh)
    assert loaded is fresh and info.arch is None
    assert torch.equal(_output(loaded), _output(model))
    again, _ = load_model(tmp_path / "mine.dsz", model=_fresh(7))  # load_model opens .dsz files too
    assert torch.equal(_output(again), _output(model))


def test_float16_dsz_without_info_is_within_rounding(tmp_path):
    model = _compressed(_trained_looking())
    save_dsz(tmp_path / "half.dsz", model, float_dtype="float16")
    loaded, _ = load_dsz(tmp_path / "half.dsz", model=_fresh())
    torch.testing.assert_close(_output(loaded), _output(model), rtol=1e-2, atol=1e-2)


def test_structured_pruning_changes_shapes_and_the_files_still_load(tmp_path):
    model = _trained_looking()
    result = prune_channels(model, (1, 8, 8), _Structured(ratio=0.5))
    assert {"depthwise", "se.reduce", "head_bn", "fc"} <= set(result.resized)
    _compressed(model)
    expected = _output(model)
    save_model(tmp_path / "small.safetensors", model)
    save_dsz(tmp_path / "small.dsz", model)
    for path in ("small.safetensors", "small.dsz"):
        loaded, _ = load_model(tmp_path / path, model=_fresh())
        assert torch.equal(_output(loaded), expected), path
        assert loaded.depthwise.groups == model.depthwise.groups < 16
        assert loaded.head_bn.num_features == model.head_bn.num_features < 24


def test_plain_model_round_trips_too(tmp_path):
    model = _trained_looking()
    save_dsz(tmp_path / "plain.dsz", model)
    save_model(tmp_path / "plain.safetensors", model)
    for path in ("plain.dsz", "plain.safetensors"):
        loaded, _ = load_model(tmp_path / path, model=_fresh())
        assert torch.equal(_output(loaded), _output(model))


def test_without_an_instance_the_error_says_the_file_needs_it(tmp_path):
    model = _trained_looking()
    save_model(tmp_path / "m.safetensors", model)
    save_dsz(tmp_path / "m.dsz", model)
    for path in ("m.safetensors", "m.dsz"):
        with pytest.raises(UserError, match=r"holds no architecture.*load_model\(path, model=\.\.\.\)"):
            load_model(tmp_path / path)
    with pytest.raises(UserError, match="holds no architecture"):
        load_dsz(tmp_path / "m.dsz")


def test_an_instance_of_another_class_is_refused_in_one_line(tmp_path):
    save_model(tmp_path / "m.safetensors", _trained_looking())
    with pytest.raises(UserError, match="the model has no module|does not fit"):
        load_model(tmp_path / "m.safetensors", model=torch.nn.Sequential(torch.nn.Linear(2, 2)))
    with pytest.raises(UserError, match="takes a torch.nn.Module"):
        load_model(tmp_path / "m.safetensors", model="UserNet")


def test_instance_file_holds_no_architecture_and_no_pickle(tmp_path):
    path = save_model(tmp_path / "m.safetensors", _compressed(_trained_looking()))
    data = path.read_bytes()
    header = json.loads(data[8:8 + int.from_bytes(data[:8], "little")])
    meta = json.loads(header["__metadata__"]["deepshrink"])
    assert meta["arch"] is None and meta["input"] is None
    assert meta["modules"]["depthwise"]["groups"] == 16
    assert not data.startswith((b"\x80", b"PK"))
    save_dsz(tmp_path / "m.dsz", _trained_looking())
    encoded = read_dsz(tmp_path / "m.dsz", model=_fresh())
    assert encoded.info.arch is None and encoded.info.modules


def test_zoo_files_load_into_a_given_instance_too(tmp_path):
    from deepshrink.models import InputSpec, ModelInfo, build_model, make_spec

    spec = make_spec("digits-cnn", num_classes=10, in_channels=1, image_size=8)
    model = build_model(spec)
    info = ModelInfo(spec, InputSpec((1, 8, 8), (0.5,), (0.25,)))
    save_dsz(tmp_path / "zoo.dsz", model, info)
    loaded, back = load_model(tmp_path / "zoo.dsz", model=build_model(spec))
    assert back.arch == spec and torch.equal(_output(loaded), _output(model))
