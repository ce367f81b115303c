import pytest
from torch import nn

from deepshrink.errors import UserError
from deepshrink.models import build_model, make_spec
from deepshrink.prune import prunable_layers


def test_resnet20_excludes_stem_and_classifier_by_default():
    model = build_model(make_spec("resnet20"))
    names = list(prunable_layers(model))
    assert len(names) == 18 and "conv1" not in names and "linear" not in names
    assert names[0] == "layer1.0.conv1" and names[-1] == "layer3.2.conv2"
    everything = list(prunable_layers(model, exclude_first_last=False))
    assert everything[0] == "conv1" and everything[-1] == "linear" and len(everything) == 20


def test_exclude_by_glob_and_name():
    model = build_model(make_spec("resnet20"))
    names = list(prunable_layers(model, exclude=["layer3.*", "layer1.0.conv1"]))
    assert len(names) == 11 and not any(n.startswith("layer3") for n in names)
    with pytest.raises(UserError, match="matches no"):
        prunable_layers(model, exclude=["layer9.*"])


def test_vit_projections_are_prunable():
    names = list(prunable_layers(build_model(make_spec("vit-tiny"))))
    assert "blocks.0.attn.q_proj" in names and "blocks.5.mlp.fc2" in names
    assert "patch_embed" not in names and "head" not in names


def test_early_exit_models_keep_the_backbone_classifier_and_exit_classifiers_dense():
    from deepshrink.models import build_model, make_spec
    from deepshrink.models.early_exit import early_exit_spec

    spec = early_exit_spec(make_spec("digits-cnn", in_channels=1, image_size=8), ["bn1", "pool"])
    model = build_model(spec)
    heads = [[n for n, m in model.exits[i].named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
             for i in range(2)]
    kept = set(prunable_layers(model))
    assert "backbone.fc" not in kept and "backbone.conv1" not in kept
    assert {f"exits.{i}.{head[-1]}" for i, head in enumerate(heads)}.isdisjoint(kept)
    assert "backbone.conv2" in kept
    everything = set(prunable_layers(model, exclude_first_last=False))
    assert {"backbone.fc", "backbone.conv1"} <= everything
