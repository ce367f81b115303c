"""Module overrides: resized layers as plain data in the ArchSpec, and pruned models that
save and load through the registry alone."""

import json

import pytest
import torch
from torch import nn

from deepshrink.errors import UserError
from deepshrink.models import ArchSpec, InputSpec, ModelInfo, build_model, load_model, make_spec, save_model
from deepshrink.models.overrides import apply_overrides, describe_module, describe_modules
from deepshrink.models.zoo import ZeroPadShortcut


def test_describe_and_apply_round_trip():
    conv = nn.Conv2d(4, 6, 3, stride=2, padding=1, bias=False)
    args = describe_module(conv)
    assert args == {"type": "Conv2d", "in_channels": 4, "out_channels": 6, "kernel_size": [3, 3],
                    "stride": [2, 2], "padding": [1, 1], "dilation": [1, 1], "groups": 1, "bias": False,
                    "padding_mode": "zeros"}
    assert describe_module(nn.BatchNorm2d(5, eps=1e-3))["eps"] == 1e-3
    assert describe_module(ZeroPadShortcut(2, 5, 2, positions=[0, 4])) == {
        "type": "ZeroPadShortcut", "in_channels": 2, "out_channels": 5, "stride": 2, "positions": [0, 4]}
    model = nn.Sequential(nn.Conv2d(3, 8, 1), nn.Sequential(nn.Linear(8, 8)))
    model.eval()
    apply_overrides(model, json.loads(json.dumps({"0": {**args, "in_channels": 3}, "1.0": describe_module(nn.Linear(6, 2))})))
    assert model[0].weight.shape == (6, 3, 3, 3) and model[0].stride == (2, 2) and model[0].bias is None
    assert model[1][0].weight.shape == (2, 6) and not model[0].training
    with pytest.raises(ValueError):
        describe_module(nn.LayerNorm(4))


def test_bad_overrides_are_user_errors():
    model = nn.Sequential(nn.Conv2d(3, 8, 1))
    with pytest.raises(UserError, match="unknown module type"):
        apply_overrides(model, {"0": {"type": "Transformer"}})
    with pytest.raises(UserError, match="does not have"):
        apply_overrides(model, {"5": describe_module(nn.Linear(2, 2))})
    with pytest.raises(UserError, match="cannot build Linear"):
        apply_overrides(model, {"0": {"type": "Linear", "width": 3}})
    with pytest.raises(UserError, match="overrides"):
        ArchSpec.from_dict({"name": "resnet20", "overrides": [1]})


def test_spec_without_overrides_is_unchanged_and_with_them_round_trips():
    spec = make_spec("resnet20")
    assert spec.to_dict() == {"name": "resnet20", "kwargs": spec.kwargs}
    model = build_model(spec)
    model.layer1[0].conv1 = nn.Conv2d(16, 5, 3, padding=1, bias=False)
    model.layer1[0].bn1 = nn.BatchNorm2d(5)
    model.layer1[0].conv2 = nn.Conv2d(5, 16, 3, padding=1, bias=False)
    names = ["layer1.0.conv1", "layer1.0.bn1", "layer1.0.conv2"]
    pruned = ArchSpec(spec.name, spec.kwargs, describe_modules(model, names))
    again = ArchSpec.from_dict(json.loads(json.dumps(pruned.to_dict())))
    assert again == pruned
    rebuilt = build_model(again)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}


def test_structurally_pruned_model_saves_and_loads(tmp_path):
    from deepshrink.prune.structured import StructuredConfig, prune_channels, pruned_spec

    torch.manual_seed(0)
    spec = make_spec("resnet20", width=8, image_size=16)
    model = build_model(spec).eval()
    result = prune_channels(model, (3, 16, 16), StructuredConfig(criterion="l2", ratio=0.4, global_ranking=True))
    info = ModelInfo(pruned_spec(spec, model, result.resized), InputSpec((3, 16, 16), (0.5,) * 3, (0.25,) * 3))
    save_model(tmp_path / "pruned.safetensors", model, info)
    loaded, loaded_info = load_model(tmp_path / "pruned.safetensors")
    x = torch.randn(2, 3, 16, 16)
    assert torch.equal(loaded(x), model(x))
    assert loaded_info.arch.overrides["layer2.0.shortcut"]["positions"] == model.layer2[0].shortcut.positions
    assert sum(p.numel() for p in loaded.parameters()) == result.params_after
