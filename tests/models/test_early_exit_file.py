"""Early-exit models in model files: the ``early-exit`` spec, save/load round trips, copies."""

import json

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open

from deepshrink.errors import UserError
from deepshrink.models import ArchSpec, InputSpec, ModelInfo, build_model, load_model, make_spec, model_names, save_model
from deepshrink.models.attach import copy_model
from deepshrink.models.early_exit import EARLY_EXIT_ARCH, EarlyExitModel, add_exits, early_exit_spec
from deepshrink.prune import mask_method, prune_layers

BACKBONE = make_spec("digits-cnn", num_classes=4, in_channels=3, image_size=8)
INPUT = InputSpec((3, 8, 8), (0.5,) * 3, (0.25,) * 3)


def _randomised(model):
    """Random weights and BatchNorm statistics, so a round trip that drops anything shows."""
    torch.manual_seed(1)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                tensor.copy_(torch.rand_like(tensor) + 0.5 if "running_var" in name else torch.randn_like(tensor))
    return model.eval()


def _every_exit(model, x):
    final = model(x)
    return [*model.exit_logits, final]


def test_the_spec_holds_the_backbone_spec_and_exit_points_as_plain_data():
    spec = early_exit_spec(BACKBONE, ["bn1", "pool"])
    again = ArchSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec and spec.name == EARLY_EXIT_ARCH
    assert spec.kwargs["exit_points"] == ["bn1", "pool"]
    assert ArchSpec.from_dict(spec.kwargs["backbone"]) == BACKBONE
    assert (spec.kwargs["num_classes"], spec.kwargs["in_channels"], spec.kwargs["image_size"]) == (4, 3, 8)
    model = build_model(spec)
    assert isinstance(model, EarlyExitModel) and model.input_shape == (3, 8, 8)
    assert [head[2].in_features for head in model.exits] == [16, 32]  # digits-cnn: bn1 16, pool 32 channels
    assert EARLY_EXIT_ARCH not in model_names()  # a wrapper, not something `train --model` offers


def test_round_trip_gives_identical_outputs_at_every_exit(tmp_path):
    spec = early_exit_spec(BACKBONE, ["bn1", "pool"])
    model = _randomised(build_model(spec))
    save_model(tmp_path / "m.safetensors", model, ModelInfo(spec, INPUT, dataset="synthetic"))
    loaded, info = load_model(tmp_path / "m.safetensors")
    assert isinstance(loaded, EarlyExitModel) and loaded.exit_points == ["bn1", "pool"]
    assert info.arch == spec
    x = torch.randn(5, 3, 8, 8)
    with torch.no_grad():
        for before, after in zip(_every_exit(model, x), _every_exit(loaded, x), strict=True):
            assert torch.equal(before, after)
        assert torch.equal(model.predict_with_exits(x, 0.6)[0], loaded.predict_with_exits(x, 0.6)[0])
    with safe_open(str(tmp_path / "m.safetensors"), "pt") as handle:  # only tensors and JSON
        stored = json.loads(handle.metadata()["deepshrink"])
        assert stored["arch"]["kwargs"]["backbone"]["name"] == "digits-cnn"
        assert "exits.1.2.weight" in handle.keys() and "backbone.fc.weight" in handle.keys()


def test_heads_added_to_a_trained_backbone_keep_its_weights_and_reload(tmp_path):
    backbone = _randomised(build_model(BACKBONE))
    reference = {k: v.clone() for k, v in backbone.state_dict().items()}
    model, spec = add_exits(backbone, BACKBONE, ["pool"])
    assert spec == early_exit_spec(BACKBONE, ["pool"])
    for key, tensor in reference.items():
        assert torch.equal(model.state_dict()[f"backbone.{key}"], tensor)
    save_model(tmp_path / "m.safetensors", model.eval(), ModelInfo(spec, INPUT))
    loaded, _ = load_model(tmp_path / "m.safetensors")
    plain = build_model(BACKBONE).eval()
    plain.load_state_dict(reference)
    x = torch.randn(3, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(x), plain(x))  # the final classifier is the backbone's own
        pooled = plain.pool(F.relu(plain.bn2(plain.conv2(F.relu(plain.bn1(plain.conv1(x)))))))  # digits-cnn by hand
        assert torch.equal(loaded.exit_logits[0], model.exits[0](pooled))


def test_masks_on_backbone_and_heads_survive_the_round_trip(tmp_path):
    spec = early_exit_spec(BACKBONE, ["bn1", "pool"])
    model = _randomised(build_model(spec))
    prune_layers(model, ["backbone.conv2", "exits.1.2"], mask_method("magnitude"), 0.5)
    save_model(tmp_path / "m.safetensors", model, ModelInfo(spec, INPUT))
    loaded, info = load_model(tmp_path / "m.safetensors")
    assert {p["module"] for p in info.parametrizations} == {"backbone.conv2", "exits.1.2"}
    assert (loaded.exits[1][2].weight == 0).float().mean() == 0.5
    x = torch.randn(4, 3, 8, 8)
    with torch.no_grad():
        for before, after in zip(_every_exit(model, x), _every_exit(loaded, x), strict=True):
            assert torch.equal(before, after)


def test_a_copy_runs_its_own_heads():
    model = _randomised(build_model(early_exit_spec(BACKBONE, ["bn1", "pool"])))
    clone = copy_model(model)
    with torch.no_grad():
        clone.exits[0][2].weight.zero_()
        clone.exits[0][2].bias.fill_(1.0)
        x = torch.randn(2, 3, 8, 8)
        model(x)
        original = [z.clone() for z in model.exit_logits]
        clone(x)
    assert len(clone.exit_logits) == 2 and torch.equal(clone.exit_logits[0], torch.ones(2, 4))
    assert [torch.equal(a, b) for a, b in zip(original, model.exit_logits)] == [True, True]  # untouched by the copy


@pytest.mark.parametrize("kwargs,needle", [
    ({"exit_points": ["nope"]}, "unknown: nope (its top-level modules: conv1, bn1"),
    ({"exit_points": "pool"}, "list of module names"),
    ({"num_classes": 5}, "disagree: num_classes 5 vs 4"),
    ({"backbone": early_exit_spec(BACKBONE, ["pool"]).to_dict()}, "cannot itself"),
])
def test_bad_specs_are_user_errors(kwargs, needle):
    spec = early_exit_spec(BACKBONE, ["pool"])
    with pytest.raises(UserError, match=needle.replace("(", r"\(")):
        build_model(ArchSpec(spec.name, {**spec.kwargs, **kwargs}))


def test_exits_on_an_early_exit_model_are_refused():
    with pytest.raises(UserError, match="already has early exits"):
        early_exit_spec(early_exit_spec(BACKBONE, ["pool"]), ["bn1"])
    with pytest.raises(UserError, match="image_size"):
        early_exit_spec(ArchSpec("digits-cnn", {"num_classes": 4, "in_channels": 3}), ["pool"])
