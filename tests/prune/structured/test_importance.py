"""Channel scores checked against hand computations."""

import pytest
import torch
from torch import nn

from deepshrink.errors import UserError
from deepshrink.prune.structured import DependencyGraph, channel_scores


class Pair(nn.Module):
    """conv a (3 filters of 2x1x1) -> BN -> conv b (1 filter over 3 channels)."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(2, 3, 1, bias=False)
        self.bn = nn.BatchNorm2d(3)
        self.b = nn.Conv2d(3, 1, 1, bias=False)

    def forward(self, x):
        return self.b(self.bn(self.a(x)))


@pytest.fixture
def pair():
    model = Pair().eval()
    with torch.no_grad():
        model.a.weight.copy_(torch.tensor([[1.0, -2.0], [3.0, 4.0], [0.0, 0.5]]).reshape(3, 2, 1, 1))
        model.b.weight.copy_(torch.tensor([2.0, -1.0, 0.5]).reshape(1, 3, 1, 1))
        model.bn.weight.copy_(torch.tensor([0.5, -2.0, 1.0]))
    graph = DependencyGraph(model, (2, 3, 3))
    return model, graph.group_of("a")


def test_l1_and_l2_average_the_filters_and_the_consumer_slices(pair):
    model, group = pair
    # filters of a: |1|+|-2| = 3, 3+4 = 7, 0.5; input slices of b: 2, 1, 0.5; mean of the two tensors
    assert torch.allclose(channel_scores(model, group, "l1"), torch.tensor([2.5, 4.0, 0.5]))
    l2 = torch.tensor([(5 ** 0.5 + 2) / 2, (5 + 1) / 2, (0.5 + 0.5) / 2])
    assert torch.allclose(channel_scores(model, group, "l2"), l2)


def test_fpgm_sums_distances_to_the_other_filters(pair):
    model, group = pair
    a = model.a.weight.reshape(3, 2)
    b = model.b.weight.reshape(3, 1)
    expected = (torch.cdist(a, a).sum(1) + torch.cdist(b, b).sum(1)) / 2
    assert torch.allclose(channel_scores(model, group, "fpgm"), expected)
    # a filter at the geometric median of the others scores lowest
    with torch.no_grad():
        model.a.weight.copy_(torch.tensor([[-1.0, 0.0], [0.0, 0.0], [1.0, 0.0]]).reshape(3, 2, 1, 1))
        model.b.weight.fill_(1.0)
    assert channel_scores(model, group, "fpgm").argmin() == 1


def test_bn_scale_and_random(pair):
    model, group = pair
    assert torch.equal(channel_scores(model, group, "bn-scale"), torch.tensor([0.5, 2.0, 1.0]))
    first = channel_scores(model, group, "random", generator=torch.Generator().manual_seed(3))
    again = channel_scores(model, group, "random", generator=torch.Generator().manual_seed(3))
    assert torch.equal(first, again) and first.shape == (3,)
    other = channel_scores(model, group, "random", generator=torch.Generator().manual_seed(4))
    assert not torch.equal(first, other)  # the generator, not a constant, sets the scores
    assert ((first >= 0) & (first < 1)).all()
    with pytest.raises(UserError, match="unknown criterion"):
        channel_scores(model, group, "taylor")


def test_bn_scale_is_none_without_batchnorm():
    model = nn.Sequential(nn.Conv2d(1, 2, 1), nn.ReLU(), nn.Conv2d(2, 1, 1))
    group = DependencyGraph(model, (1, 2, 2)).group_of("0")
    assert channel_scores(model, group, "bn-scale") is None
