"""CIFAR ResNets: exact parameter counts, akamaster module names, option-A/B shortcuts, init."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deepshrink.errors import UserError
from deepshrink.models import build_model, make_spec
from deepshrink.models.zoo import BasicBlock, CifarResNet, ZeroPadShortcut


def n_params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    "name, count",
    [("resnet20", 269_722), ("resnet32", 464_154), ("resnet44", 658_586), ("resnet56", 853_018),
     ("resnet110", 1_727_962)],
)
def test_parameter_counts_option_a(name, count):
    assert n_params(build_model(make_spec(name))) == count


def test_option_b_adds_projections():
    model = build_model(make_spec("resnet20", shortcut="B"))
    # two projections: 16->32 (512 weights + 64 BN) and 32->64 (2048 weights + 128 BN)
    assert n_params(model) == 269_722 + 576 + 2176
    proj = model.layer2[0].shortcut
    assert isinstance(proj, nn.Sequential)
    conv, bn = proj
    assert isinstance(conv, nn.Conv2d) and conv.kernel_size == (1, 1) and conv.stride == (2, 2)
    assert conv.bias is None and (conv.in_channels, conv.out_channels) == (16, 32)
    assert isinstance(bn, nn.BatchNorm2d) and bn.num_features == 32
    assert isinstance(model.layer2[1].shortcut, nn.Identity)


def test_names_match_akamaster_layout():
    model = build_model(make_spec("resnet20"))
    keys = set(model.state_dict())
    assert {"conv1.weight", "bn1.running_mean", "layer1.0.conv1.weight", "layer3.2.bn2.running_var",
            "linear.weight", "linear.bias"} <= keys
    assert not any("shortcut" in key for key in keys)  # option A has no parameters or buffers
    assert [len(getattr(model, f"layer{i}")) for i in (1, 2, 3)] == [3, 3, 3]
    assert all(isinstance(block, BasicBlock) for block in model.layer2)
    for layer, (cin, cout) in ((model.layer2, (16, 32)), (model.layer3, (32, 64))):
        sc = layer[0].shortcut
        assert isinstance(sc, ZeroPadShortcut)
        assert (sc.in_channels, sc.out_channels, sc.stride) == (cin, cout, 2)
        assert sc.pad_front == sc.pad_back == cin // 2
    assert isinstance(model.layer1[0].shortcut, nn.Identity)
    conv = model.layer2[0].conv1
    assert conv.stride == (2, 2) and conv.padding == (1, 1) and conv.bias is None


def test_zero_pad_shortcut_by_hand():
    x = torch.arange(3 * 4 * 5, dtype=torch.float32).reshape(1, 3, 4, 5)
    out = ZeroPadShortcut(3, 8, 2)(x)
    expected = torch.zeros(1, 8, 2, 3)
    for c in range(3):
        for i in range(2):
            for j in range(3):
                expected[0, 2 + c, i, j] = x[0, c, 2 * i, 2 * j]  # 2 zero channels in front, 3 behind
    assert torch.equal(out, expected)


def test_zero_pad_shortcut_matches_akamaster():
    x = torch.randn(2, 16, 8, 8)
    planes = 32
    reference = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4), "constant", 0)
    assert torch.equal(ZeroPadShortcut(16, planes, 2)(x), reference)
    with pytest.raises(ValueError):
        ZeroPadShortcut(8, 4, 1)


def test_block_forward_by_hand():
    torch.manual_seed(0)
    block = BasicBlock(4, 8, stride=2).eval()
    for bn in (block.bn1, block.bn2):
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.data.uniform_(0.5, 1.5)
    x = torch.randn(2, 4, 6, 6)
    h = F.relu(block.bn1(F.conv2d(x, block.conv1.weight, stride=2, padding=1)))
    h = block.bn2(F.conv2d(h, block.conv2.weight, padding=1))
    pad = torch.zeros(2, 8, 3, 3)
    pad[:, 2:6] = x[:, :, ::2, ::2]
    torch.testing.assert_close(block(x), F.relu(h + pad))


def test_width_and_channels():
    model = build_model(make_spec("resnet32", num_classes=100, in_channels=1, image_size=28, width=8))
    assert model.conv1.in_channels == 1
    assert (model.linear.in_features, model.linear.out_features) == (32, 100)
    assert model.layer3[0].shortcut.pad_front == 8
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 100)


def test_kaiming_normal_init():
    torch.manual_seed(0)
    model = CifarResNet(3)
    conv = model.layer3[1].conv2.weight  # fan_in 64 * 9
    assert conv.std().item() == pytest.approx(math.sqrt(2 / 576), rel=0.05)
    assert model.linear.weight.std().item() == pytest.approx(math.sqrt(2 / 64), rel=0.15)


def test_bad_arguments():
    with pytest.raises(UserError, match="width"):
        build_model(make_spec("resnet20", width=0))
    with pytest.raises(UserError, match="image_size"):
        build_model(make_spec("resnet20", image_size=0))
