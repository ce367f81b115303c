import pytest
import torch
from torch import nn

from deepshrink.analysis import count_params, measure_latency
from deepshrink.errors import UserError


def test_latency_fields_and_threads_restored():
    before = torch.get_num_threads()
    result = measure_latency(nn.Conv2d(3, 8, 3), (3, 16, 16), batch=2, threads=1, warmup=1, repeats=5)
    assert result.threads == 1 and result.batch == 2 and result.repeats == 5
    assert 0 < result.p10_ms <= result.latency_ms <= result.p90_ms
    assert result.images_per_s == pytest.approx(2 / (result.latency_ms / 1e3))
    assert torch.get_num_threads() == before


def test_bad_arguments():
    with pytest.raises(UserError):
        measure_latency(nn.Identity(), (1, 2, 2), batch=0)
    with pytest.raises(UserError):
        measure_latency(nn.Identity(), (1, 2, 2), threads=0)


def test_count_params_counts_zeros():
    layer = nn.Linear(4, 3)
    with torch.no_grad():
        layer.weight[0].zero_()
    counts = count_params(layer)
    assert counts.total == 15 and counts.nonzero == 11
