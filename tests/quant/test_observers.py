"""Range observers: hand-computed ranges, numpy percentiles as the oracle, state in buffers."""

import math

import numpy as np
import pytest
import torch

from deepshrink.errors import UserError
from deepshrink.quant.observers import (OBSERVERS, FixedRangeObserver, MinMaxObserver, MovingAverageObserver,
                                        PercentileObserver, make_observer)


def test_registry_names():
    assert OBSERVERS == {"minmax": MinMaxObserver, "ema": MovingAverageObserver,
                         "percentile": PercentileObserver, "fixed": FixedRangeObserver}


def test_minmax_keeps_the_running_extremes():
    observer = MinMaxObserver()
    assert not observer.has_observed and observer.range() == (math.inf, -math.inf)
    observer.observe(torch.tensor([[1.0, -2.0], [3.0, 0.5]]))
    observer.observe(torch.tensor([0.5, 4.0]))
    observer.observe(torch.tensor([-1.0, 2.0]))  # inside: changes nothing
    lo, hi = observer.range()
    assert (lo.item(), hi.item()) == (-2.0, 4.0) and int(observer.batches) == 3
    observer.reset()
    assert not observer.has_observed and observer.range() == (math.inf, -math.inf)


def test_moving_average_starts_at_the_first_batch():
    observer = MovingAverageObserver(momentum=0.5)
    observer.observe(torch.tensor([-1.0, 0.0, 2.0]))
    assert [v.item() for v in observer.range()] == [-1.0, 2.0]
    observer.observe(torch.tensor([-3.0, 4.0]))
    # lo = -1 + 0.5 * (-3 - -1) = -2; hi = 2 + 0.5 * (4 - 2) = 3
    assert [v.item() for v in observer.range()] == [-2.0, 3.0]
    observer.observe(torch.tensor([-2.0, 1.0]))
    assert [v.item() for v in observer.range()] == [-2.0, 2.0]


def test_percentile_matches_numpy_averaged_over_batches():
    generator = torch.Generator().manual_seed(0)
    batches = [torch.randn(4, 50, generator=generator) * (i + 1) for i in range(3)]
    observer = PercentileObserver(percentile=95.0)
    for batch in batches:
        observer.observe(batch)
    expected_lo = np.mean([np.percentile(b.numpy(), 5.0) for b in batches])
    expected_hi = np.mean([np.percentile(b.numpy(), 95.0) for b in batches])
    lo, hi = observer.range()
    assert lo.item() == pytest.approx(expected_lo, rel=1e-5) and hi.item() == pytest.approx(expected_hi, rel=1e-5)


def test_percentile_100_is_the_mean_of_batch_extremes_and_ignores_outliers_below_100():
    observer = PercentileObserver(percentile=100.0)
    observer.observe(torch.tensor([-1.0, 0.0, 3.0]))
    observer.observe(torch.tensor([-3.0, 1.0, 5.0]))
    assert [v.item() for v in observer.range()] == [-2.0, 4.0]
    clipped = PercentileObserver(percentile=99.0)
    x = torch.cat([torch.linspace(0, 1, 999), torch.tensor([1000.0])])
    clipped.observe(x)
    assert clipped.range()[1].item() < 2.0  # the single outlier does not set the range


def test_percentile_subsample_is_reproducible_and_close():
    x = torch.randn(200_000, generator=torch.Generator().manual_seed(1))
    first, second = PercentileObserver(99.0, max_samples=20_000), PercentileObserver(99.0, max_samples=20_000)
    reseeded, whole = PercentileObserver(99.0, max_samples=20_000, seed=1), PercentileObserver(99.0)
    for observer in (first, second, reseeded, whole):
        observer.observe(x)
    assert torch.equal(first.hi, second.hi)
    assert not torch.equal(first.hi, reseeded.hi)  # a sample really is drawn, from the seed
    assert whole.hi.item() == pytest.approx(np.percentile(x.numpy(), 99.0), rel=1e-4)  # under the limit: all of x
    assert first.hi.item() == pytest.approx(np.percentile(x.numpy(), 99.0), abs=0.1)


def test_fixed_range_ignores_the_data():
    observer = FixedRangeObserver(0.0, 6.0)
    observer.observe(torch.tensor([-10.0, 10.0]))
    observer.reset()
    assert observer.has_observed and [v.item() for v in observer.range()] == [0.0, 6.0]
    assert observer.spec() == {"lo": 0.0, "hi": 6.0}


@pytest.mark.parametrize("name", ["minmax", "ema", "percentile"])
def test_state_lives_in_buffers(name):
    observer = make_observer(name)
    observer.observe(torch.tensor([-1.5, 0.25, 2.0]))
    observer.observe(torch.tensor([-0.5, 3.0]))
    state = observer.state_dict()
    assert set(state) == {"lo", "hi", "batches"}
    fresh = make_observer(name, **observer.spec())
    fresh.load_state_dict(state)
    assert fresh.has_observed and all(torch.equal(a, b) for a, b in zip(fresh.range(), observer.range()))


def test_empty_batches_are_skipped():
    observer = MinMaxObserver()
    observer.observe(torch.empty(0, 3))
    assert not observer.has_observed


@pytest.mark.parametrize("name,args,needle", [
    ("median", {}, "unknown range observer"),
    ("ema", {"momentum": 0.0}, "momentum"),
    ("percentile", {"percentile": 40.0}, "percentile"),
    ("fixed", {"lo": 1.0, "hi": 0.0}, "lo <= hi"),
    ("minmax", {"momentum": 0.1}, "bad arguments"),
])
def test_bad_observers_are_user_errors(name, args, needle):
    with pytest.raises(UserError, match=needle):
        make_observer(name, **args)
