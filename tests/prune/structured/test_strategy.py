"""Plans: per-layer ratios, one global ranking, rounding of the kept channel counts."""

import torch

from deepshrink.prune.structured import Group, global_plan, kept_channels, layer_plan, unaligned_groups
from deepshrink.prune.structured.strategy import counts_plan, next_block, removal_order


def group(name, n):
    return Group(name, {(name, "out"): torch.arange(n).reshape(n, 1)})


def test_kept_channels_rounds_up_and_keeps_one():
    assert kept_channels(16, 5) == 5
    assert kept_channels(16, 0) == 1
    assert kept_channels(64, 21, round_to=8) == 24
    assert kept_channels(64, 0, round_to=8) == 8
    assert kept_channels(10, 9, round_to=8) == 10  # 16 > 10: the group stays whole


A, B = group("layer1.conv", 4), group("layer2.conv", 10)
SCORED = [(A, torch.tensor([4.0, 1.0, 3.0, 2.0])), (B, torch.arange(10.0).flip(0))]  # B: channel i scores 9 - i


def test_layer_plan_removes_the_lowest_scores_per_group():
    plan = layer_plan(SCORED, 0.5)
    assert plan[A].tolist() == [1, 3] and plan[B].tolist() == [5, 6, 7, 8, 9]
    plan = layer_plan(SCORED, 0.5, layer_ratios={"layer2.*": 0.3})
    assert plan[A].tolist() == [1, 3] and plan[B].tolist() == [7, 8, 9]
    plan = layer_plan(SCORED, 0.9, round_to=4)  # keep 1 -> rounded up to 4
    assert plan[A].tolist() == [] and plan[B].tolist() == [4, 5, 6, 7, 8, 9]


def test_global_plan_ranks_all_channels_together():
    # normalised by the group means (2.5 and 4.5): A [1.6, .4, 1.2, .8], B [2, 1.78, ..., .22, 0];
    # the 7 lowest of 14 are B9, B8, A1, B7, B6, A3, B5
    plan = global_plan(SCORED, 0.5)
    assert plan[A].tolist() == [1, 3] and plan[B].tolist() == [5, 6, 7, 8, 9]
    # raw scores: B9 0, A1 1, B8 1, A3 2, B7 2, A2 3, B6 3
    plan = global_plan(SCORED, 0.5, normalize=False)
    assert plan[A].tolist() == [1, 2, 3] and plan[B].tolist() == [6, 7, 8, 9]
    plan = global_plan(SCORED, 0.99)  # every group keeps one channel: its highest-scoring one
    assert plan[A].tolist() == [1, 2, 3] and plan[B].tolist() == list(range(1, 10))
    plan = global_plan(SCORED, 0.99, round_to=4)  # kept counts rounded up: A stays whole, B keeps 4
    assert plan[A].tolist() == [] and plan[B].tolist() == [4, 5, 6, 7, 8, 9]
    plan = global_plan(SCORED, 0.0)
    assert plan[A].tolist() == [] and plan[B].tolist() == []


def test_unaligned_groups_names_cuts_off_the_kernel_multiple():
    channels = {"a": (16, 11), "b": (16, 8), "c": (16, 16), "d": (10, 7), "e": (64, 1)}
    assert unaligned_groups(channels) == ["a", "e"]  # d was never a multiple of 8, c untouched
    assert unaligned_groups(channels, multiple=4) == ["a", "e"]  # 8 is a multiple of 4
    assert unaligned_groups(channels, multiple=1) == []


def _prefix_plan(base, order, length, round_to=1):
    counts = list(base)
    for index in order[:length]:
        counts[index] += 1
    return counts_plan(SCORED, counts, round_to)


def _same(a, b):
    return all(a[g].tolist() == b[g].tolist() for g in (A, B))


def test_removal_order_prefixes_are_the_ratio_plans():
    base, order = removal_order(SCORED)  # per layer: A's j-th channel at j/4, B's at j/10
    assert base == [0, 0] and order == [1, 1, 0, 1, 1, 0, 1, 1, 1, 0, 1, 1]  # ties: A first
    assert _same(_prefix_plan(base, order, 7), layer_plan(SCORED, 0.5))  # 2 of A, 5 of B
    assert _same(_prefix_plan(base, order, 7, round_to=4), layer_plan(SCORED, 0.5, round_to=4))
    base, order = removal_order(SCORED, global_ranking=True)
    assert base == [0, 0] and len(order) == 14
    assert _same(_prefix_plan(base, order, 7), global_plan(SCORED, 0.5))
    assert _same(_prefix_plan(base, order, 13, round_to=4), global_plan(SCORED, 0.99, round_to=4))
    base, order = removal_order(SCORED, layer_ratios={"layer2.*": 0.3})  # B fixed at 3 removed
    assert base == [0, 3] and order == [0, 0, 0]


def test_next_block_is_one_rounding_step():
    assert next_block(16, 0) == 1 and next_block(16, 14) == 15 and next_block(16, 15) is None
    assert next_block(16, 0, round_to=8) == 8 and next_block(16, 3, round_to=8) == 8
    assert next_block(16, 8, round_to=8) is None  # kept 8: the last block stays
    assert next_block(10, 0, round_to=8) == 2  # 10 -> 8: onto the grid
    assert next_block(4, 0, round_to=8) is None  # smaller than one block: stays whole
