import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
import torch

from deepshrink.errors import UserError
from deepshrink.prune.criteria import (global_magnitude_masks, magnitude_mask, mask_method, pruned_count,
                                       random_mask, std_mask)


def test_magnitude_mask_breaks_ties_by_position():
    weight = torch.tensor([1.0, -1.0, 1.0, 2.0, -0.5, 0.5, 2.0, 1.0, -2.0, 1.0])
    mask = magnitude_mask(weight, 0.4)  # 4 pruned: both 0.5s, then the first two of the 1.0s
    assert mask.tolist() == [0, 0, 1, 1, 0, 0, 1, 1, 1, 1]


@pytest.mark.parametrize("sparsity", [0.0, 0.1, 0.37, 0.5, 0.7, 0.999])
def test_magnitude_mask_count_is_exact_with_all_values_tied(sparsity):
    weight = torch.full((16, 8, 3, 3), 0.25)
    weight[::2] = -0.25
    mask = magnitude_mask(weight, sparsity)
    assert mask.shape == weight.shape
    assert int((mask == 0).sum()) == round(sparsity * weight.numel())


def test_magnitude_mask_keeps_the_largest_magnitudes():
    weight = torch.randn(50, 40, generator=torch.Generator().manual_seed(0))
    mask = magnitude_mask(weight, 0.7)
    assert weight.abs()[mask == 0].max() <= weight.abs()[mask == 1].min()
    assert int((mask == 0).sum()) == 1400


def test_std_mask_matches_hand_computation():
    weight = torch.tensor([-2.0, -1.0, 0.0, 1.0, 2.0])  # std (n-1) = sqrt(10/4) = 1.5811
    assert std_mask(weight, 1.0).tolist() == [1, 0, 0, 0, 1]
    assert std_mask(weight, 0.5).tolist() == [1, 1, 0, 1, 1]  # 0.79 threshold
    assert std_mask(weight, 0.0).tolist() == [1, 1, 1, 1, 1]
    # global scope: one std over all layers together (per layer, a's std 0.71 would keep both)
    masks = mask_method("std", "global")({"a": weight[:2], "b": weight[2:]}, 1.0)
    assert masks["a"].tolist() == [1, 0] and masks["b"].tolist() == [0, 0, 1]


def test_random_mask_count_and_seed():
    weight = torch.randn(30, 7)
    a = random_mask(weight, 0.3, torch.Generator().manual_seed(1))
    b = random_mask(weight, 0.3, torch.Generator().manual_seed(1))
    c = random_mask(weight, 0.3, torch.Generator().manual_seed(2))
    assert int((a == 0).sum()) == 63
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_global_threshold_over_layers_with_ties_between_layers():
    weights = {"a": torch.arange(1.0, 11.0), "b": torch.arange(1.0, 11.0) / 10}  # a: 1..10, b: 0.1..1.0
    masks = global_magnitude_masks(weights, 0.5)  # 10 smallest: b's 0.1..0.9, then the tied 1.0 of a
    assert masks["a"].tolist() == [0] + [1] * 9
    assert masks["b"].tolist() == [0] * 9 + [1]


def test_global_scope_of_mask_method_prunes_exact_total():
    generator = torch.Generator().manual_seed(0)
    weights = {"a": torch.randn(10, 10, generator=generator), "b": 5 * torch.randn(20, 5, generator=generator)}
    masks = mask_method("magnitude", "global")(weights, 0.6)
    assert sum(int((m == 0).sum()) for m in masks.values()) == 120
    assert int((masks["a"] == 0).sum()) > int((masks["b"] == 0).sum())  # a has the smaller weights
    # one threshold over both layers: every pruned weight, in either layer, is below every kept one
    pruned = torch.cat([w.abs()[masks[n] == 0] for n, w in weights.items()])
    kept = torch.cat([w.abs()[masks[n] == 1] for n, w in weights.items()])
    assert pruned.max() <= kept.min()
    assert all(masks[n].shape == w.shape for n, w in weights.items())


@pytest.mark.parametrize("sparsity", [-0.1, 1.0, 1.5, float("nan")])
def test_sparsity_out_of_range_is_a_user_error(sparsity):
    with pytest.raises(UserError, match=r"\[0, 1\)"):
        magnitude_mask(torch.ones(4), sparsity)


def test_bad_names_and_factors_are_user_errors():
    with pytest.raises(UserError, match="criterion"):
        mask_method("biggest")
    with pytest.raises(UserError, match="scope"):
        mask_method("magnitude", "model")
    with pytest.raises(UserError, match="std factor"):
        std_mask(torch.ones(3), -1.0)
    assert pruned_count(7, 0.5) == 4 and pruned_count(10, 0.0) == 0


def test_capped_global_threshold_stops_at_the_cap_and_prunes_the_rest_elsewhere():
    weights = {"a": torch.arange(1.0, 11.0), "b": torch.arange(1.0, 11.0) / 10}
    masks = global_magnitude_masks(weights, 0.5, max_layer_sparsity=0.6)  # b may lose only 6
    assert masks["b"].tolist() == [0] * 6 + [1] * 4
    assert masks["a"].tolist() == [0] * 4 + [1] * 6  # a's 1, 2, 3, 4 make up the 10


@given(st.lists(st.integers(1, 40), min_size=1, max_size=5), st.floats(0.0, 0.95), st.floats(0.05, 1.0),
       st.integers(0, 2**16))
@settings(max_examples=200, deadline=None)
def test_capped_global_threshold_is_exact_capped_and_greedy(sizes, sparsity, cap, seed):
    generator = torch.Generator().manual_seed(seed)
    weights = {f"l{i}": torch.randint(-5, 6, (n,), generator=generator).float() * (i + 1)
               for i, n in enumerate(sizes)}  # many ties, within and between layers
    total = sum(sizes)
    caps = {name: round(cap * w.numel()) for name, w in weights.items()}
    if round(sparsity * total) > sum(caps.values()):
        with pytest.raises(UserError, match="cannot be reached"):
            global_magnitude_masks(weights, sparsity, cap)
        return
    masks = global_magnitude_masks(weights, sparsity, cap)
    assert sum(int((m == 0).sum()) for m in masks.values()) == round(sparsity * total)
    assert all(int((masks[n] == 0).sum()) <= caps[n] for n in weights)
    # greedy: a kept weight smaller than a pruned one only sits in a layer that reached its cap
    largest_pruned = max((w.abs()[masks[n] == 0].max() for n, w in weights.items() if (masks[n] == 0).any()),
                         default=None)
    for name, w in weights.items():
        below = (w.abs() < largest_pruned) & (masks[name] == 1) if largest_pruned is not None else None
        if below is not None and below.any():
            assert int((masks[name] == 0).sum()) == caps[name]
    if cap == 1.0:
        uncapped = global_magnitude_masks(weights, sparsity)
        assert all(torch.equal(masks[n], uncapped[n]) for n in weights)


def test_a_cap_that_never_binds_changes_nothing():
    generator = torch.Generator().manual_seed(3)
    weights = {"a": torch.randn(8, 9, generator=generator), "b": 2 * torch.randn(30, generator=generator)}
    uncapped = global_magnitude_masks(weights, 0.4)
    capped = mask_method("magnitude", "global", max_layer_sparsity=0.99)(weights, 0.4)
    assert all(torch.equal(capped[n], uncapped[n]) for n in weights)


def test_a_cap_outside_global_magnitude_is_a_user_error():
    with pytest.raises(UserError, match="global magnitude"):
        mask_method("magnitude", "layer", max_layer_sparsity=0.8)
    with pytest.raises(UserError, match="global magnitude"):
        mask_method("random", "global", max_layer_sparsity=0.8)
