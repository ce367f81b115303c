"""Physical removal: predicted shapes, and the two equivalence cases of the issue."""

import pytest
import torch

from deepshrink.errors import UserError
from deepshrink.models import build_model, make_spec
from deepshrink.models.zoo import ZeroPadShortcut
from deepshrink.prune.structured import DependencyGraph, remove_channels, zero_channels


def resnet(shortcut):
    torch.manual_seed(0)
    model = build_model(make_spec("resnet20", shortcut=shortcut))
    for m in model.modules():  # non-trivial BatchNorm statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return model.eval(), (3, 32, 32)


def vit():
    torch.manual_seed(0)
    return build_model(make_spec("vit-tiny", depth=2, dim=32, mlp_dim=48, image_size=16)).eval(), (3, 16, 16)


def models(small_models):
    return {"resnet-A": resnet("A"), "resnet-B": resnet("B"), "vit": vit(),
            **small_models}


def every_other(group):
    """Channels 1, 3, 5, ... of the group (never all of them)."""
    return torch.arange(1, group.n, 2)


@pytest.mark.parametrize("name", ["resnet-A", "resnet-B", "vit", "concat", "separable", "flatten", "grouped"])
def test_removing_nothing_is_bit_identical(small_models, name):
    model, shape = models(small_models)[name]
    x = torch.randn(3, *shape)
    before = model(x)
    graph = DependencyGraph(model, shape)
    assert remove_channels(model, {g: torch.empty(0, dtype=torch.long) for g in graph.groups}) == []
    assert torch.equal(model(x), before)


@pytest.mark.parametrize("name", ["resnet-A", "resnet-B", "vit", "concat", "separable", "flatten", "grouped"])
def test_removing_zero_weight_channels_changes_outputs_only_by_rounding(small_models, name):
    model, shape = models(small_models)[name]
    graph = DependencyGraph(model, shape)
    plan = {g: every_other(g) for g in graph.groups if g.n > 1}
    zero_channels(model, plan)  # filters, biases, BatchNorm scale and shift (prune/structured/gradual.py)
    x = torch.randn(3, *shape)
    before = model(x)
    params_before = sum(p.numel() for p in model.parameters())
    remove_channels(model, plan)
    after = model(x)
    assert after.shape == before.shape
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)
    assert sum(p.numel() for p in model.parameters()) < params_before


def test_resnet_option_a_shapes_and_shortcut_positions():
    model, shape = resnet("A")
    graph = DependencyGraph(model, shape)
    stem, pads2 = graph.group_of("conv1"), graph.group_of("layer2.0.conv2")
    block = graph.group_of("layer2.1.conv1")
    resized = remove_channels(model, {stem: torch.tensor([0, 15]), pads2: torch.tensor([0, 1, 2, 10]),
                                      block: torch.arange(20)})
    assert model.conv1.weight.shape == (14, 3, 3, 3)
    assert model.layer1[1].conv1.weight.shape == (16, 14, 3, 3)
    assert model.layer2[1].conv1.weight.shape == (12, 32 - 6, 3, 3)
    assert model.layer2[1].bn1.num_features == 12 and model.layer2[1].conv2.weight.shape == (26, 12, 3, 3)
    sc = model.layer2[0].shortcut
    assert isinstance(sc, ZeroPadShortcut) and (sc.in_channels, sc.out_channels) == (14, 26)
    # layer2 channels kept: 3..7 (5 pads), 9..22 (the stem's 1..14), 24..31 minus 26 (7 pads)
    assert sc.positions == list(range(5, 19))
    assert model.layer3[0].shortcut.in_channels == 26 and model.layer3[0].conv1.in_channels == 26
    # layer3 loses the images of the removed layer2 channels (16+0..2, 16+8, 16+23, 16+26), so the
    # 26 kept layer2 channels land at 16..41 in order, behind layer3's 16 untouched front pads
    sc3 = model.layer3[0].shortcut
    assert (sc3.out_channels, sc3.positions, sc3.index) == (58, list(range(16, 42)), None)
    assert model.linear.in_features == 58 and model.linear.out_features == 10
    assert {"layer2.0.shortcut", "layer3.0.shortcut", "linear"} <= set(resized)
    assert model(torch.randn(2, *shape)).shape == (2, 10)


def test_zero_pad_positions_by_hand():
    x = torch.arange(2 * 4, dtype=torch.float32).reshape(1, 2, 2, 2)
    out = ZeroPadShortcut(2, 5, 2, positions=[1, 3])(x)
    expected = torch.zeros(1, 5, 1, 1)
    expected[0, 1, 0, 0], expected[0, 3, 0, 0] = x[0, 0, 0, 0], x[0, 1, 0, 0]
    assert torch.equal(out, expected)
    default = ZeroPadShortcut(2, 6, 1)
    assert default.positions == [2, 3] and default.index is None and default.pad_back == 2
    with pytest.raises(ValueError):
        ZeroPadShortcut(2, 4, 1, positions=[3, 1])


def test_cannot_remove_every_channel(small_models):
    model, shape = small_models["concat"]
    graph = DependencyGraph(model, shape)
    weight = model.a.weight.detach().clone()
    with pytest.raises(UserError, match="cannot remove all 4 channels of group 'a'"):
        remove_channels(model, {graph.group_of("a"): torch.arange(4)})
    assert torch.equal(model.a.weight, weight) and model.c.in_channels == 10  # nothing was resized
    remove_channels(model, {graph.group_of("a"): torch.tensor([2, 0, 2, 1, 0])})  # repeats count once
    assert torch.equal(model.a.weight, weight[3:]) and model.c.in_channels == 7
