"""Cross-check against Torch-Pruning (a test-only peer): removing the same channels gives the
same tensor shapes, parameter and MAC counts, and the same function."""

import copy

import pytest
import torch

from deepshrink.analysis.costs import model_costs
from deepshrink.models import build_model, make_spec
from deepshrink.prune.structured import DependencyGraph, remove_channels

tp = pytest.importorskip("torch_pruning")


def check_same(ours, theirs, shape):
    x = torch.randn(2, *shape)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in theirs.state_dict().items()}
    ops_ours, params_ours = tp.utils.count_ops_and_params(ours, x[:1])
    ops_theirs, params_theirs = tp.utils.count_ops_and_params(theirs, x[:1])
    assert (ops_ours, params_ours) == (ops_theirs, params_theirs)
    assert model_costs(ours, shape).totals["macs"] == model_costs(theirs, shape).totals["macs"]
    torch.testing.assert_close(ours(x), theirs(x))


def test_resnet_option_b_matches_torch_pruning():
    torch.manual_seed(0)
    shape = (3, 16, 16)
    ours = build_model(make_spec("resnet20", shortcut="B", width=8, image_size=16)).eval()
    theirs = copy.deepcopy(ours)
    cuts = {"conv1": [1, 2, 6], "layer1.1.conv1": [0, 3, 5], "layer2.0.conv2": [4, 10, 11], "layer3.2.conv1": [7]}
    graph = DependencyGraph(ours, shape)
    remove_channels(ours, {graph.group_of(name): torch.tensor(idx) for name, idx in cuts.items()})
    deps = tp.DependencyGraph().build_dependency(theirs, example_inputs=torch.randn(1, *shape))
    for name, idx in cuts.items():
        group = deps.get_pruning_group(theirs.get_submodule(name), tp.prune_conv_out_channels, idxs=idx)
        group.prune()
    check_same(ours, theirs, shape)


def test_concat_and_depthwise_match_torch_pruning(small_models):
    for name, cuts in (("concat", {"a": [0, 2], "b": [1, 4, 5], "c": [3]}), ("separable", {"stem": [2, 5], "pw": [0, 7, 11]})):
        ours, shape = small_models[name]
        theirs = copy.deepcopy(ours)
        graph = DependencyGraph(ours, shape)
        remove_channels(ours, {graph.group_of(m): torch.tensor(idx) for m, idx in cuts.items()})
        deps = tp.DependencyGraph().build_dependency(theirs, example_inputs=torch.randn(1, *shape))
        for module, idx in cuts.items():
            deps.get_pruning_group(theirs.get_submodule(module), tp.prune_conv_out_channels, idxs=idx).prune()
        check_same(ours, theirs, shape)


def test_grouped_convolution_matches_torch_pruning(small_models):
    """Our channel j of a 4-group conv is input/filter j of every group; Torch-Pruning removes the
    same tensor slices when given all of them."""
    ours, shape = small_models["grouped"]
    theirs = copy.deepcopy(ours)
    graph = DependencyGraph(ours, shape)
    remove_channels(ours, {graph.group_of("a"): torch.tensor([1]), graph.group_of("g"): torch.tensor([0, 2])})
    deps = tp.DependencyGraph().build_dependency(theirs, example_inputs=torch.randn(1, *shape))
    deps.get_pruning_group(theirs.a, tp.prune_conv_out_channels, idxs=[1, 3, 5, 7]).prune()
    deps.get_pruning_group(theirs.g, tp.prune_conv_out_channels, idxs=[0, 2, 3, 5, 6, 8, 9, 11]).prune()
    check_same(ours, theirs, shape)
