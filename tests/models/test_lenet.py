"""LeNet-5 and LeNet-300-100: layer shapes for several image sizes, parameter counts, dropout."""

import pytest
import torch
import torch.fx
from torch import nn

from deepshrink.errors import UserError
from deepshrink.models import build_model, make_spec
from deepshrink.models.zoo import LeNet5


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def test_lenet5_mnist_is_the_classic_network():
    model = build_model(make_spec("lenet5"))
    # conv1 156 + conv2 2,416 + fc1 400*120+120 + fc2 120*84+84 + fc3 84*10+10
    assert n_params(model) == 61_706
    assert model.conv1.padding == (2, 2) and model.conv2.padding == (0, 0)
    assert [model.fc1.in_features, model.fc2.in_features, model.fc3.in_features] == [400, 120, 84]


@pytest.mark.parametrize(
    "channels, size, flat, pad2", [(1, 8, 64, 2), (3, 32, 576, 0), (1, 16, 64, 0), (1, 4, 16, 2)]
)
def test_lenet5_other_sizes(channels, size, flat, pad2):
    model = build_model(make_spec("lenet5", in_channels=channels, image_size=size, num_classes=5)).eval()
    assert model.fc1.in_features == flat and model.conv2.padding == (pad2, pad2)
    x = torch.randn(2, channels, size, size)
    assert model(x).shape == (2, 5)
    assert torch.equal(torch.fx.symbolic_trace(model)(x), model(x))


def test_lenet5_too_small():
    with pytest.raises(ValueError, match="at least 4x4"):
        LeNet5(image_size=3)
    with pytest.raises(UserError, match="at least 4x4"):
        build_model(make_spec("lenet5", image_size=3))


def test_lenet300_counts_and_layers():
    model = build_model(make_spec("lenet300"))
    assert n_params(model) == 784 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10 == 266_610
    assert not any(isinstance(m, nn.Dropout) for m in model.modules())
    assert build_model(make_spec("lenet300", in_channels=3, image_size=32)).fc1.in_features == 3072


def test_lenet300_dropout():
    torch.manual_seed(0)
    model = build_model(make_spec("lenet300", dropout=0.5))
    assert isinstance(model.drop1, nn.Dropout) and model.drop1.p == 0.5 and model.drop2.p == 0.5
    x = torch.randn(4, 1, 28, 28)
    assert not torch.equal(model.train()(x), model(x))
    model.eval()
    assert torch.equal(model(x), model(x))
    with pytest.raises(UserError, match="dropout"):
        build_model(make_spec("lenet300", dropout=1.0))
