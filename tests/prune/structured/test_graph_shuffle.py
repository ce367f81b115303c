"""The dependency graph through channel split (chunk/split) and shuffle (view/transpose/view)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deepshrink.prune.structured import DependencyGraph, StructuredConfig, prune_channels
from deepshrink.prune.structured.gradual import zero_channels
from deepshrink.prune.structured.pruner import plan_channels


class Shuffled(nn.Module):
    """conv (8) -> split into halves -> conv on the second -> cat -> shuffle (groups 2) -> conv."""

    def __init__(self, fixed_view: bool = False, split: str = "chunk") -> None:
        super().__init__()
        self.a, self.b, self.c = nn.Conv2d(3, 8, 1), nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(8, 5, 1)
        self.fixed_view, self.split = fixed_view, split

    def forward(self, x):
        x = self.a(x)
        x1, x2 = x.chunk(2, dim=1) if self.split == "chunk" else torch.split(x, x.shape[1] // 2, dim=1)
        y = torch.cat((x1, self.b(x2)), dim=1)
        n, c, h, w = y.size()
        y = y.view(n, 2, 4, h, w) if self.fixed_view else y.view(n, 2, c // 2, h, w)
        return self.c(y.transpose(1, 2).contiguous().view(n, c, h, w))


@pytest.mark.parametrize("split", ["chunk", "split"])
def test_split_and_shuffle_couple_channels_by_index(split):
    graph = DependencyGraph(Shuffled(split=split), (3, 6, 6))
    assert graph.skipped == {"c": "feeds the model output"}
    group = graph.group_of("a")  # a's j, a's 4 + j (the halves) and b's j (the shuffle's groups)
    assert group.n == 4 and group.slices[("a", "out")].tolist() == [[j, 4 + j] for j in range(4)]
    assert group.slices[("b", "out")].tolist() == [[j] for j in range(4)]
    # cat index j goes to 2j, cat index 4 + j to 2j + 1 of c's input
    assert group.slices[("c", "in")].tolist() == [[2 * j, 2 * j + 1] for j in range(4)]


def test_pruning_through_the_shuffle_is_exact():
    torch.manual_seed(0)
    model, shape = Shuffled().eval(), (3, 6, 6)
    settings = StructuredConfig(ratio=0.5)
    plan = plan_channels(model, shape, settings)
    zero_channels(model, plan.removed)
    x = torch.randn(2, *shape)
    with torch.no_grad():
        before = model(x)
    prune_channels(model, shape, settings, plan=plan)
    assert model.a.out_channels == 4 and model.b.out_channels == 2 and model.c.in_channels == 4
    with torch.no_grad():
        torch.testing.assert_close(model(x), before, rtol=1e-5, atol=1e-5)


def test_a_view_of_constant_sizes_blocks_the_channels():
    graph = DependencyGraph(Shuffled(fixed_view=True), (3, 6, 6))
    assert "do not follow the channel count" in graph.skipped["a"]


class ConstantSplit(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 8, 1), nn.Conv2d(4, 4, 1)

    def forward(self, x):
        x1, x2 = torch.split(self.a(x), 4, dim=1)  # 4 stays 4 after pruning: more parts
        return self.b(x1) + x2


def test_a_split_of_constant_size_blocks_the_channels():
    assert "splits the channel axis by constant sizes" in DependencyGraph(ConstantSplit(), (3, 4, 4)).skipped["a"]
