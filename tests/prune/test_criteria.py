import pytest
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
    weights = {"a": torch.randn(10, 10), "b": 5 * torch.randn(20, 5)}
    masks = mask_method("magnitude", "global")(weights, 0.6)
    assert sum(int((m == 0).sum()) for m in masks.values()) == 120
    assert int((masks["a"] == 0).sum()) > int((masks["b"] == 0).sum())  # a has the smaller weights


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
