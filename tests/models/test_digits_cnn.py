"""digits-cnn: layer layout, shapes, and a quick check that it learns the sklearn digits."""

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from deepshrink.models import build_model, make_spec


def test_layout():
    model = build_model(make_spec("digits-cnn"))
    convs = [model.conv1, model.conv2, model.conv3]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(1, 16), (16, 32), (32, 64)]
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) for c in convs)
    assert [bn.num_features for bn in (model.bn1, model.bn2, model.bn3)] == [16, 32, 64]
    assert isinstance(model.fc, nn.Linear) and model.fc.in_features == 64


def test_other_input_sizes_trace():
    model = build_model(make_spec("digits-cnn", in_channels=3, image_size=15, num_classes=4)).eval()
    x = torch.randn(2, 3, 15, 15)
    assert model(x).shape == (2, 4)
    assert torch.equal(torch.fx.symbolic_trace(model)(x), model(x))


def test_learns_digits_in_three_epochs():
    from sklearn.datasets import load_digits

    torch.manual_seed(0)
    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32).view(-1, 1, 8, 8) / 16
    y = torch.tensor(digits.target)
    order = torch.randperm(len(x))
    train, test = order[:1400], order[1400:]
    model = build_model(make_spec("digits-cnn"))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(3):
        model.train()
        for idx in train[torch.randperm(len(train))].split(32):
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(x[test]).argmax(1) == y[test]).float().mean().item()
    assert accuracy >= 0.95
