"""The dependency graph: coupled channel groups of residual, concat, depthwise, grouped, flatten and ViT
models."""

import pytest
import torch
from torch import nn

from deepshrink.errors import UserError
from deepshrink.models import build_model, make_spec
from deepshrink.prune.structured import DependencyGraph, remove_channels


def keys(group):
    return set(group.slices)


def test_resnet_option_a_couples_stages_through_the_zero_pad():
    graph = DependencyGraph(build_model(make_spec("resnet20")), (3, 32, 32))
    names = [g.name for g in graph.groups]
    # the stem's channels run through all of layer1 and, via the shortcuts, the middle of layers 2 and 3
    stem = graph.group_of("conv1")
    assert stem.n == 16 and stem.residual
    assert ("layer1.2.conv2", "out") in keys(stem) and ("layer2.0.shortcut", "pad_in") in keys(stem)
    # stem channel c sits at layer2 channel 8 + c and layer3 channel 16 + 8 + c
    assert torch.equal(stem.slices[("layer2.1.conv2", "out")][:, 0], torch.arange(8, 24))
    assert torch.equal(stem.slices[("layer3.2.bn2", "bn")][:, 0], torch.arange(24, 40))
    # layer2's zero-padded channels form their own group, which layer3 also carries
    pads = graph.group_of("layer2.0.conv2")
    assert pads.n == 16 and pads.slices[("layer2.0.shortcut", "pad_out")][:, 0].tolist() == [*range(8), *range(24, 32)]
    assert ("layer2.0.shortcut", "pad_in") not in keys(pads)
    assert graph.group_of("layer3.0.conv2").n == 32
    first = graph.group_of("layer1.0.conv1")
    assert keys(first) == {("layer1.0.conv1", "out"), ("layer1.0.bn1", "bn"), ("layer1.0.conv2", "in")}
    assert not first.residual
    assert len(names) == 12 and graph.skipped == {"linear": "feeds the model output"}


def test_resnet_option_b_couples_the_projection():
    graph = DependencyGraph(build_model(make_spec("resnet20", shortcut="B")), (3, 32, 32))
    stage2 = graph.group_of("layer2.0.conv2")
    assert stage2.n == 32
    assert {("layer2.0.shortcut.0", "out"), ("layer2.0.shortcut.1", "bn"), ("layer3.0.shortcut.0", "in"),
            ("layer3.0.conv1", "in")} <= keys(stage2)
    assert ("layer2.0.shortcut.0", "in") in keys(graph.group_of("conv1"))


def test_concat_offsets(small_models):
    graph = DependencyGraph(*small_models["concat"])
    a, b = graph.group_of("a"), graph.group_of("b")
    assert a.slices[("c", "in")][:, 0].tolist() == [0, 1, 2, 3]
    assert b.slices[("c", "in")][:, 0].tolist() == [4, 5, 6, 7, 8, 9]
    assert ("bn_a", "bn") in keys(a) and ("bn_a", "bn") not in keys(b)
    assert graph.group_of("c").slices[("fc", "in")].tolist() == [[i] for i in range(8)]


def test_depthwise_follows_its_input_and_single_output_conv_is_regular(small_models):
    graph = DependencyGraph(*small_models["separable"])
    stem = graph.group_of("stem")
    assert keys(stem) == {("stem", "out"), ("bn0", "bn"), ("dw", "dw"), ("bn1", "bn"), ("pw", "in")}
    assert keys(graph.group_of("pw")) == {("pw", "out"), ("single", "in")}
    # a conv with one output channel is a regular conv (its group feeds the Linear through a flatten)
    single = graph.group_of("single")
    assert single.n == 1 and single.slices[("fc", "in")].tolist() == [list(range(16))]


def test_flatten_into_linear_gives_feature_blocks(small_models):
    graph = DependencyGraph(*small_models["flatten"])
    conv = graph.group_of("conv")
    assert conv.slices[("fc1", "in")].tolist() == [[4 * c + i for i in range(4)] for c in range(4)]
    assert keys(graph.group_of("fc1")) == {("fc1", "out"), ("fc2", "in")}
    assert graph.skipped == {"fc2": "feeds the model output"}


def test_grouped_convolution_couples_channel_j_of_every_group(small_models):
    graph = DependencyGraph(*small_models["grouped"])
    assert [g.name for g in graph.groups] == ["a", "g"] and graph.skipped == {"b": "feeds the model output"}
    a = graph.group_of("a")  # 8 channels in 4 groups of 2: channel j is {j, 2 + j, 4 + j, 6 + j}
    assert a.n == 2 and keys(a) == {("a", "out"), ("g", "gin")}
    assert a.slices[("a", "out")].tolist() == [[0, 2, 4, 6], [1, 3, 5, 7]]
    assert a.slices[("g", "gin")].tolist() == [[0], [1]]  # weight dim 1 holds one group's inputs
    g = graph.group_of("g")  # 12 filters in 4 groups of 3
    assert g.n == 3 and keys(g) == {("g", "out"), ("bn", "bn"), ("b", "in")}
    assert g.slices[("g", "out")].tolist() == [[0, 3, 6, 9], [1, 4, 7, 10], [2, 5, 8, 11]]


def test_grouped_convolution_removal_keeps_equal_groups(small_models):
    model, shape = small_models["grouped"]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    graph = DependencyGraph(model, shape)
    remove_channels(model, {graph.group_of("a"): torch.tensor([0]), graph.group_of("g"): torch.tensor([1])})
    assert (model.a.out_channels, model.g.in_channels, model.g.out_channels, model.g.groups) == (4, 4, 8, 4)
    assert model.g.weight.shape == (8, 1, 3, 3) and model.bn.num_features == 8 and model.b.in_channels == 8
    assert model(torch.randn(2, *shape)).shape == (2, 4, 4, 4)
    # the right slices are kept: a's channel 0 is filters 0, 2, 4, 6 (input 0 of each of g's groups),
    # g's channel 1 is filters 1, 4, 7, 10 (with their BatchNorm entries and b's inputs)
    kept_a, kept_g = torch.tensor([1, 3, 5, 7]), torch.tensor([0, 2, 3, 5, 6, 8, 9, 11])
    after = model.state_dict()
    assert torch.equal(after["a.weight"], before["a.weight"][kept_a])
    assert torch.equal(after["a.bias"], before["a.bias"][kept_a])
    assert torch.equal(after["g.weight"], before["g.weight"][kept_g][:, 1:])
    assert torch.equal(after["g.bias"], before["g.bias"][kept_g])
    for key in ("weight", "bias", "running_mean", "running_var"):
        assert torch.equal(after[f"bn.{key}"], before[f"bn.{key}"][kept_g])
    assert torch.equal(after["b.weight"], before["b.weight"][:, kept_g])
    assert torch.equal(after["b.bias"], before["b.bias"])


def test_vit_mlp_hidden_channels_are_prunable_and_the_rest_is_skipped():
    graph = DependencyGraph(build_model(make_spec("vit-tiny", depth=2)), (3, 32, 32))
    assert [g.name for g in graph.groups] == ["blocks.0.mlp.fc1", "blocks.1.mlp.fc1"]
    mlp = graph.group_of("blocks.0.mlp.fc1")
    assert mlp.n == 256 and keys(mlp) == {("blocks.0.mlp.fc1", "out"), ("blocks.0.mlp.fc2", "in")}
    for name in ("patch_embed", "blocks.0.attn.q_proj", "blocks.0.attn.out_proj", "blocks.0.mlp.fc2", "head"):
        assert name in graph.skipped


class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = nn.Sequential(nn.Conv2d(3, 4, 1), Decide())

    def forward(self, x):
        return self.inner(x)


class Decide(nn.Module):
    def forward(self, x):
        return x if x.sum() > 0 else -x


def test_untraceable_model_names_the_module():
    with pytest.raises(UserError, match=r"cannot trace 'inner\.1'"):
        DependencyGraph(Branchy(), (3, 4, 4))
