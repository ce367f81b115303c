"""The zoo through the registry: every model builds, runs, traces; bad names and options are UserErrors."""

import json

import pytest
import torch
import torch.fx

from deepshrink.errors import UserError
from deepshrink.models import ArchSpec, build_model, get_entry, make_spec, model_names

ZOO = {
    "resnet20": (3, 32, 32),
    "resnet32": (3, 32, 32),
    "resnet44": (3, 32, 32),
    "resnet56": (3, 32, 32),
    "resnet110": (3, 32, 32),
    "lenet5": (1, 28, 28),
    "lenet300": (1, 28, 28),
    "digits-cnn": (1, 8, 8),
    "vit-tiny": (3, 32, 32),
}


def test_zoo_is_registered_with_default_inputs():
    assert set(ZOO) <= set(model_names())
    for name, shape in ZOO.items():
        entry = get_entry(name)
        assert entry.default_input == shape
        assert entry.description


@pytest.mark.parametrize("name", sorted(ZOO))
def test_builds_runs_and_traces(name):
    torch.manual_seed(0)
    spec = make_spec(name, num_classes=7)
    assert spec.kwargs["in_channels"] == ZOO[name][0] and spec.kwargs["image_size"] == ZOO[name][1]
    model = build_model(spec).eval()
    x = torch.randn(3, *ZOO[name])
    with torch.no_grad():
        out = model(x)
        traced = torch.fx.symbolic_trace(model)
        assert out.shape == (3, 7)
        assert torch.isfinite(out).all()
        assert torch.equal(traced(x), out)
        assert traced(x[:1]).shape == (1, 7)  # the batch size is not baked into the graph


def test_spec_round_trips_through_json():
    spec = make_spec("resnet20", num_classes=100, shortcut="B")
    again = ArchSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec
    model = build_model(again)
    assert model.linear.out_features == 100


def test_unknown_name_lists_the_zoo():
    with pytest.raises(UserError, match="unknown model 'resnet19'") as info:
        make_spec("resnet19")
    for name in ZOO:
        assert name in str(info.value)


def test_unknown_option_is_user_error():
    with pytest.raises(UserError, match="has no option depth"):
        make_spec("resnet20", depth=3)
    with pytest.raises(UserError, match="has no option patch_size"):
        build_model(ArchSpec("lenet5", {"patch_size": 4}))


def test_bad_option_value_is_user_error():
    with pytest.raises(UserError, match="shortcut must be 'A' or 'B'"):
        build_model(make_spec("resnet20", shortcut="C"))
    with pytest.raises(UserError, match="num_classes must be a positive integer"):
        build_model(make_spec("digits-cnn", num_classes=0))
