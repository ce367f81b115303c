"""The ImageNet-style zoo: ResNet-18/34/50, MobileNetV2, ShuffleNetV2, DenseNet, VGG-16-BN.

Each builds through the registry, runs at its default input and at 32x32 with ``stem=cifar``,
traces with torch.fx, has the published parameter count, and prunes structurally (or, for
ShuffleNetV2, as far as the dependency graph allows; see the xfail below).
"""

import json

import pytest
import torch
import torch.fx
from torch import nn

from deepshrink.analysis.costs import model_costs
from deepshrink.errors import UserError
from deepshrink.models import ArchSpec, build_model, get_entry, make_spec, model_names
from deepshrink.prune.structured import (DependencyGraph, StructuredConfig, plan_channels, prune_channels,
                                         zero_channels)
from deepshrink.prune.structured.spec import pruned_spec

NEW = {"resnet18": (3, 224, 224), "resnet34": (3, 224, 224), "resnet50": (3, 224, 224),
       "mobilenetv2": (3, 224, 224), "shufflenetv2": (3, 224, 224), "densenet": (3, 32, 32),
       "vgg16-bn": (3, 32, 32)}

# spatial size of the last feature maps (the global pool's input): default input, then 32x32 cifar stem
LAST_MAP = {"resnet18": (7, 4), "resnet34": (7, 4), "resnet50": (7, 4), "mobilenetv2": (7, 4),
            "shufflenetv2": (7, 4), "densenet": (8, 8), "vgg16-bn": (1, 1)}


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def pooled_map(model, x):
    """(logits, spatial size of the input of ``model.avgpool``) for input ``x``."""
    seen = []
    handle = model.avgpool.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[-1]))
    try:
        with torch.no_grad():
            out = model(x)
    finally:
        handle.remove()
    return out, seen[0]


def test_registered_with_default_inputs_and_descriptions():
    assert set(NEW) <= set(model_names())
    for name, shape in NEW.items():
        entry = get_entry(name)
        assert entry.default_input == shape and entry.description
    assert {"resnet20", "resnet56"} <= set(model_names())  # the CIFAR ResNets keep their names


@pytest.mark.parametrize("name", sorted(NEW))
def test_default_input_runs_and_traces(name):
    torch.manual_seed(0)
    spec = make_spec(name, num_classes=7)
    assert (spec.kwargs["in_channels"], spec.kwargs["image_size"]) == NEW[name][:2]
    model = build_model(spec).eval()
    x = torch.randn(1, *NEW[name])
    out, size = pooled_map(model, x)
    assert out.shape == (1, 7) and torch.isfinite(out).all()
    assert size == LAST_MAP[name][0]
    traced = torch.fx.symbolic_trace(model)
    with torch.no_grad():
        torch.testing.assert_close(traced(x), out)


@pytest.mark.parametrize("name", sorted(NEW))
def test_cifar_stem_on_32x32_keeps_4x4_maps(name):
    torch.manual_seed(0)
    options = {"width": 8} if name.startswith("resnet") else {"width": 0.5} if name == "shufflenetv2" else {}
    model = build_model(make_spec(name, image_size=32, stem="cifar", **options)).eval()
    x = torch.randn(2, 3, 32, 32)
    out, size = pooled_map(model, x)
    assert out.shape == (2, 10) and size == LAST_MAP[name][1]
    traced = torch.fx.symbolic_trace(model)
    with torch.no_grad():
        torch.testing.assert_close(traced(x), out)


def test_other_input_channels_and_sizes():
    model = build_model(make_spec("resnet18", in_channels=1, image_size=64, num_classes=3)).eval()
    assert model.conv1.weight.shape == (64, 1, 7, 7)
    with torch.no_grad():
        assert model(torch.randn(1, 1, 64, 64)).shape == (1, 3)
    vgg = build_model(make_spec("vgg16-bn", image_size=64, width=0.125)).eval()
    with torch.no_grad():
        assert vgg(torch.randn(1, 3, 64, 64)).shape == (1, 10)  # 2x2 maps averaged by the head


# torchvision's counts for 1000 classes (resnet18/34/50, mobilenet_v2, shufflenet_v2_x1_0 and
# x0_5); Li et al. 2017 table 2 for the CIFAR VGG-16 (1.5e7); DenseNet-BC-40 (growth 12) counted
PUBLISHED_PARAMS = [
    ("resnet18", {"num_classes": 1000}, 11_689_512),
    ("resnet34", {"num_classes": 1000}, 21_797_672),
    ("resnet50", {"num_classes": 1000}, 25_557_032),
    ("mobilenetv2", {"num_classes": 1000}, 3_504_872),
    ("shufflenetv2", {"num_classes": 1000}, 2_278_604),
    ("shufflenetv2", {"num_classes": 1000, "width": 0.5}, 1_366_792),
    ("vgg16-bn", {}, 14_991_946),
    ("densenet", {}, 176_122),
]


@pytest.mark.parametrize("name, options, count", PUBLISHED_PARAMS,
                         ids=[f"{n}-{o.get('width', 1)}" for n, o, _ in PUBLISHED_PARAMS])
def test_parameter_counts(name, options, count):
    assert n_params(build_model(make_spec(name, **options))) == count


@pytest.mark.slow
def test_vgg16_bn_imagenet_head_matches_torchvision():
    model = build_model(make_spec("vgg16-bn", num_classes=1000, image_size=224, stem="imagenet"))
    assert n_params(model) == 138_365_992
    assert model.classifier[0].in_features == 512 * 7 * 7


def test_module_names_follow_torchvision():
    keys = {name: set(build_model(make_spec(name)).state_dict()) for name in NEW}
    assert {"conv1.weight", "bn1.running_var", "layer1.0.conv2.weight", "layer2.0.downsample.0.weight",
            "layer2.0.downsample.1.weight", "layer4.1.bn2.bias", "fc.weight"} <= keys["resnet18"]
    assert {"layer1.0.conv3.weight", "layer1.0.downsample.0.weight", "layer4.2.bn3.weight"} <= keys["resnet50"]
    assert {"features.0.0.weight", "features.1.conv.0.0.weight", "features.1.conv.1.weight",
            "features.2.conv.0.0.weight", "features.2.conv.1.0.weight", "features.2.conv.3.running_mean",
            "features.18.0.weight", "classifier.1.weight"} <= keys["mobilenetv2"]
    assert {"conv1.0.weight", "stage2.0.branch1.0.weight", "stage2.0.branch1.2.weight",
            "stage2.1.branch2.6.weight", "conv5.1.weight", "fc.weight"} <= keys["shufflenetv2"]
    assert {"features.conv0.weight", "features.denseblock1.denselayer1.norm1.weight",
            "features.denseblock3.denselayer6.conv2.weight", "features.transition2.conv.weight",
            "features.norm5.weight", "classifier.weight"} <= keys["densenet"]
    assert {"features.0.weight", "features.1.running_mean", "features.40.weight", "classifier.0.weight",
            "classifier.1.weight", "classifier.3.weight"} <= keys["vgg16-bn"]


def test_block_structure():
    mobilenet = build_model(make_spec("mobilenetv2", width=0.5))
    blocks = [m for m in mobilenet.features if hasattr(m, "use_residual")]
    assert len(blocks) == 17 and sum(b.use_residual for b in blocks) == 10
    depthwise = [m for m in mobilenet.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert all(m.groups == m.in_channels == m.out_channels for m in depthwise) and len(depthwise) == 17
    assert [mobilenet.features[i].conv[-2].out_channels for i in (1, 2, 4)] == [8, 16, 16]  # 16, 24, 32 x 0.5
    assert mobilenet.features[-1][0].out_channels == 1280  # kept at 1280 below width 1
    assert isinstance(build_model(make_spec("resnet18", stem="cifar")).maxpool, nn.Identity)
    assert build_model(make_spec("resnet18")).conv1.kernel_size == (7, 7)
    shuffle = build_model(make_spec("shufflenetv2", width=0.5))
    assert [len(getattr(shuffle, f"stage{i}")) for i in (2, 3, 4)] == [4, 8, 4]
    dense = build_model(make_spec("densenet", growth_rate=4, blocks=[2, 3]))
    # 8 stem channels + 2 * 4 -> transition to 8, + 3 * 4 -> 20 features
    assert dense.features.transition1.conv.out_channels == 8 and dense.classifier.in_features == 20


def test_channel_shuffle_interleaves_the_halves():
    from deepshrink.models.zoo.shufflenetv2 import channel_shuffle

    x = torch.arange(6.0).view(1, 6, 1, 1)
    assert channel_shuffle(x, 2).flatten().tolist() == [0, 3, 1, 4, 2, 5]


@pytest.mark.parametrize("name, options, message", [
    ("resnet18", {"stem": "tiny"}, "stem must be one of imagenet, cifar"),
    ("mobilenetv2", {"width": 0}, "width must be a positive number"),
    ("shufflenetv2", {"width": 0.75}, "width must be one of 0.5, 1.0, 1.5, 2.0"),
    ("densenet", {"blocks": 3}, "blocks must be a list"),
    ("densenet", {"compression": 0}, "compression must be in"),
    ("vgg16-bn", {"image_size": 16}, "at least 32"),
    ("resnet50", {"shortcut": "B"}, "has no option shortcut"),
])
def test_bad_options_are_user_errors(name, options, message):
    with pytest.raises(UserError, match=message):
        build_model(make_spec(name, **options))


def test_json_options_round_trip_through_the_spec():
    spec = make_spec("densenet", growth_rate=6, blocks=[2, 2], stem="imagenet", image_size=64)
    again = ArchSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    first, second = build_model(spec), build_model(again)
    assert [p.shape for p in first.parameters()] == [p.shape for p in second.parameters()]


# -- structured pruning ----------------------------------------------------------------------

# (options, image size): small widths and inputs keep these fast
PRUNABLE = {
    "resnet18": ({"stem": "cifar", "width": 8}, 16),
    "resnet50": ({"stem": "cifar", "width": 8}, 16),
    "mobilenetv2": ({"stem": "cifar", "width": 0.25}, 16),
    "vgg16-bn": ({"width": 0.125}, 32),
    "densenet": ({"growth_rate": 4, "blocks": [2, 2, 2]}, 16),
    "shufflenetv2": ({"stem": "cifar", "width": 0.5}, 16),
}


def small(name):
    """(spec, model in eval mode, input shape) for the pruning tests."""
    torch.manual_seed(0)
    options, size = PRUNABLE[name]
    spec = make_spec(name, image_size=size, **options)
    model = build_model(spec)
    for m in model.modules():  # non-trivial BatchNorm statistics, so zeroed channels are really tested
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return spec, model.eval(), (3, size, size)


def prune_and_check(name, ratio=0.2):
    """Prune ``ratio`` of every group: the plan's channels zeroed first give the same outputs as
    the pruned model; MACs and parameters drop; the spec with overrides rebuilds the pruned model."""
    spec, model, shape = small(name)
    settings = StructuredConfig(ratio=ratio)
    plan = plan_channels(model, shape, settings)
    zero_channels(model, plan.removed)
    x = torch.randn(2, *shape)
    with torch.no_grad():
        before = model(x)
    convs = {n: m.weight.shape for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    result = prune_channels(model, shape, settings, plan=plan)
    with torch.no_grad():
        after = model(x)
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)
    assert result.macs_after < result.macs_before and result.params_after < result.params_before
    assert result.macs_after == model_costs(model, shape).totals["macs"]
    shrunk = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.weight.shape != convs[n]]
    assert shrunk
    for m in model.modules():  # depthwise convs stay depthwise
        if isinstance(m, nn.Conv2d) and m.groups > 1:
            assert m.groups == m.in_channels == m.out_channels == m.weight.shape[0] and m.weight.shape[1] == 1
    rebuilt = build_model(pruned_spec(spec, model, result.resized)).eval()
    rebuilt.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.equal(rebuilt(x), after)
    return result, shrunk


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "mobilenetv2", "vgg16-bn", "densenet"])
def test_structured_pruning_removes_channels_exactly(name):
    result, shrunk = prune_and_check(name)
    # every group is prunable except the classifier's outputs
    assert list(result.skipped) == [{"vgg16-bn": "classifier.3", "densenet": "classifier",
                                     "mobilenetv2": "classifier.1"}.get(name, "fc")]
    assert result.macs_reduction > 0.15  # 20 % of the channels of every layer: about 1 - 0.8² of the MACs
    if name == "mobilenetv2":  # the expansion (hidden) channels shrink through the depthwise convs
        assert {"features.2.conv.0.0", "features.2.conv.1.0", "features.2.conv.2"} <= set(shrunk)


def test_shufflenetv2_prunes_through_the_shuffle_and_the_split():
    """The channel shuffle (view / transpose / view) and the split (chunk, then concatenation)
    map channel indices: the unit outputs prune, exactly, in coupled blocks. Every unit couples
    channel j of its two halves (chunk) and of the shuffle's two groups, so a stage's trunk
    channels merge into blocks that double with each stride-1 unit (width 0.5: stage2 3 blocks
    of 16 channels, stage3 one block of all 96, stage4 12 blocks of 16)."""
    result, shrunk = prune_and_check("shufflenetv2", ratio=0.4)
    assert list(result.skipped) == ["fc"]
    assert {"stage2.1.branch2.0", "stage2.1.branch2.3", "stage2.0.branch1.2", "stage4.0.branch2.5"} <= set(shrunk)
    _, model, shape = small("shufflenetv2")
    trunk = {g.name: g for g in DependencyGraph(model, shape).groups if ".branch1." in g.name}
    assert {name: (g.n, g.slices[(name, "out")].shape[1]) for name, g in trunk.items()} == {
        "stage2.0.branch1.2": (3, 8), "stage3.0.branch1.2": (1, 48), "stage4.0.branch1.2": (12, 8)}
    assert result.macs_reduction > 0.3


def test_shufflenetv2_unit_outputs_are_prunable():
    _, model, shape = small("shufflenetv2")
    graph = DependencyGraph(model, shape)
    assert list(graph.skipped) == ["fc"]
