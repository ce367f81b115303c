import pytest
import torch
from torch import nn

from deepshrink.analysis import count_params, measure_latency
from deepshrink.errors import UserError


def test_latency_fields_and_threads_restored():
    original = torch.get_num_threads()
    torch.set_num_threads(2)  # differs from the measurement's 1 thread, so a restore can be seen
    try:
        result = measure_latency(nn.Conv2d(3, 8, 3), (3, 16, 16), batch=2, threads=1, warmup=1, repeats=5)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(original)
    assert result.threads == 1 and result.batch == 2 and result.repeats == 5
    assert 0 < result.p10_ms <= result.latency_ms <= result.p90_ms
    assert result.images_per_s == pytest.approx(2 / (result.latency_ms / 1e3))


def test_bad_arguments():
    with pytest.raises(UserError, match="batch and repeats must be >= 1"):
        measure_latency(nn.Identity(), (1, 2, 2), batch=0)
    with pytest.raises(UserError, match="batch and repeats must be >= 1"):
        measure_latency(nn.Identity(), (1, 2, 2), repeats=0)
    with pytest.raises(UserError, match="warm-up >= 0"):
        measure_latency(nn.Identity(), (1, 2, 2), warmup=-1)
    with pytest.raises(UserError, match="threads must be >= 1, got 0"):
        measure_latency(nn.Identity(), (1, 2, 2), threads=0)


def test_count_params_counts_zeros():
    layer = nn.Linear(4, 3)
    with torch.no_grad():
        layer.weight[0].zero_()
    counts = count_params(layer)
    assert counts.total == 15 and counts.nonzero == 11
