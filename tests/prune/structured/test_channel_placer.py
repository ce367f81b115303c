"""A model's own channel-placing layer, declared with ``@register_channel_placer``, is handled by
the dependency graph and by channel removal like the zoo's option-A shortcut; prune/structured
imports no zoo module."""

import ast
from pathlib import Path

import pytest
import torch
from torch import nn

import deepshrink.prune.structured
from deepshrink.errors import UserError
from deepshrink.models.channels import register_channel_placer
from deepshrink.models.overrides import apply_overrides, describe_modules
from deepshrink.prune.structured import DependencyGraph, remove_channels


class Spread(nn.Module):
    """Input channel k lands at output channel ``positions[k]`` (default: every other one from
    0), times ``gain``; the other output channels are zero."""

    def __init__(self, in_channels: int, out_channels: int, gain: float = 1.0, positions=None):
        super().__init__()
        self.in_channels, self.out_channels, self.gain = in_channels, out_channels, gain
        self.positions = list(range(0, 2 * in_channels, 2)) if positions is None else list(positions)

    def forward(self, x):
        out = x.new_zeros(x.shape[0], self.out_channels, *x.shape[2:])
        return out.index_copy(1, torch.tensor(self.positions, device=x.device), x * self.gain)

    def constructor_args(self):
        return {"in_channels": self.in_channels, "out_channels": self.out_channels, "gain": self.gain,
                "positions": list(self.positions)}


@register_channel_placer
class RegisteredSpread(Spread):
    pass


class Block(nn.Module):
    """stem (3 -> 4) -> relu -> [conv (4 -> 8) + shortcut (4 -> 8)] -> relu -> pool -> fc."""

    def __init__(self, shortcut: type[Spread]):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.conv = nn.Conv2d(4, 8, 3, padding=1)
        self.shortcut = shortcut(4, 8, gain=0.5)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        x = torch.relu(self.conv(x) + self.shortcut(x))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def test_a_registered_placer_couples_its_input_with_its_positions():
    graph = DependencyGraph(Block(RegisteredSpread), (3, 6, 6))
    stem = graph.group_of("stem")
    assert stem.n == 4 and stem.residual
    assert stem.slices[("shortcut", "pad_in")][:, 0].tolist() == [0, 1, 2, 3]
    assert stem.slices[("conv", "out")][:, 0].tolist() == [0, 2, 4, 6]  # where the stem's channels land
    assert stem.slices[("shortcut", "pad_out")][:, 0].tolist() == [0, 2, 4, 6]
    rest = graph.group_of("conv")
    assert rest.slices[("conv", "out")][:, 0].tolist() == [1, 3, 5, 7] and ("shortcut", "pad_in") not in rest.slices


def test_an_unregistered_placer_is_traced_into_and_fails_by_name():
    with pytest.raises(UserError, match="cannot trace 'shortcut'"):
        DependencyGraph(Block(Spread), (3, 6, 6))


def test_removal_rebuilds_the_placer_with_its_own_arguments():
    torch.manual_seed(0)
    model = Block(RegisteredSpread).eval()
    graph = DependencyGraph(model, (3, 6, 6))
    stem, rest = graph.group_of("stem"), graph.group_of("conv")
    remove_channels(model, {stem: torch.tensor([1]), rest: torch.tensor([0, 3])})
    sc = model.shortcut
    assert type(sc) is RegisteredSpread and sc.gain == 0.5 and not sc.training
    # kept outputs: 0, 3 (conv's 1 dropped), 4, 5, 6 (7 dropped) -> inputs 0, 2, 3 land at 0, 2, 4
    assert (sc.in_channels, sc.out_channels, sc.positions) == (3, 5, [0, 2, 4])
    assert model.conv.weight.shape == (5, 3, 3, 3) and model.fc.in_features == 5
    x = torch.randn(2, 3, 6, 6)
    overrides = describe_modules(model, ["stem", "conv", "shortcut", "fc"])
    rebuilt = apply_overrides(Block(RegisteredSpread).eval(), overrides)
    rebuilt.load_state_dict(model.state_dict())
    assert torch.equal(rebuilt(x), model(x))


def test_structured_pruning_imports_no_zoo_module():
    folder = Path(deepshrink.prune.structured.__file__).parent
    imported = [node.module or "" for path in folder.glob("*.py")
                for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.ImportFrom)]
    imported += [alias.name for path in folder.glob("*.py")
                 for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Import)
                 for alias in node.names]
    assert not [name for name in imported if name.startswith("deepshrink.models.zoo")]
