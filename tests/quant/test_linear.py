"""Linear quantization: levels, scale and zero-point of hand-made tensors, STE, pruned zeros."""

import pytest
import torch

from deepshrink.quant.linear import fake_quantize, level_range, quant_params


def _quantize(x, bits, symmetric=False, per_channel=False):
    scale, zero_point = quant_params(x, bits, symmetric, per_channel)
    return fake_quantize(x, scale, zero_point, *level_range(bits, symmetric)), scale, zero_point


def test_level_ranges():
    assert level_range(2, symmetric=False) == (0, 3)
    assert level_range(8, symmetric=False) == (0, 255)
    assert level_range(2, symmetric=True) == (-1, 1)  # ternary
    assert level_range(4, symmetric=True) == (-7, 7)
    assert level_range(16, symmetric=False) == (0, 65535)


def test_asymmetric_3_bit_by_hand():
    x = torch.tensor([-0.7, 0.0, 0.3, 1.4])
    y, scale, zero_point = _quantize(x, 3)
    # range [-0.7, 1.4] over 7 steps: scale 0.3; zero point round(0.7 / 0.3) = 2
    assert scale.item() == pytest.approx(0.3)
    assert zero_point.item() == 2
    # levels round(x / 0.3) + 2 = 0, 2, 3, 7 (1.4 / 0.3 = 4.67 -> 5, clamped to 7)
    assert torch.allclose(y, torch.tensor([-0.6, 0.0, 0.3, 1.5]))


def test_symmetric_3_bit_by_hand():
    x = torch.tensor([-0.9, 0.0, 0.25, 0.6])
    y, scale, zero_point = _quantize(x, 3, symmetric=True)
    # max |x| = 0.9 over 3 positive levels: scale 0.3, levels -3..3, zero point 0
    assert scale.item() == pytest.approx(0.3) and zero_point.item() == 0
    assert torch.allclose(y, torch.tensor([-0.9, 0.0, 0.3, 0.6]))


def test_range_always_contains_zero():
    x = torch.tensor([1.0, 2.0, 4.0])  # all positive: the range is [0, 4], not [1, 4]
    y, scale, zero_point = _quantize(x, 2)
    assert scale.item() == pytest.approx(4 / 3) and zero_point.item() == 0
    assert torch.allclose(y, torch.tensor([4 / 3, 8 / 3, 4.0]))


def test_per_channel_scales_by_hand():
    x = torch.tensor([[-1.0, 0.0, 2.0], [0.0, 0.6, 3.0], [0.0, 0.0, 0.0]])
    y, scale, zero_point = _quantize(x, 2, per_channel=True)
    assert scale.shape == (3, 1) and zero_point.shape == (3, 1)
    assert scale.flatten().tolist() == pytest.approx([1.0, 1.0, 1.0])  # an all-zero row gets scale 1
    assert zero_point.flatten().tolist() == [1.0, 0.0, 0.0]
    assert torch.allclose(y, torch.tensor([[-1.0, 0.0, 2.0], [0.0, 1.0, 3.0], [0.0, 0.0, 0.0]]))


@pytest.mark.parametrize("bits", [2, 3, 4, 8, 16])
@pytest.mark.parametrize("symmetric", [False, True])
def test_values_are_levels_within_half_a_step(bits, symmetric):
    x = torch.randn(4, 3, 3, 3, generator=torch.Generator().manual_seed(bits))
    y, scale, zero_point = _quantize(x, bits, symmetric, per_channel=True)
    qmin, qmax = level_range(bits, symmetric)
    q = y / scale + zero_point
    assert torch.allclose(q, q.round(), atol=1e-3)
    assert q.round().min() >= qmin and q.round().max() <= qmax
    assert ((y - x).abs() <= scale / 2 + 1e-6).all()
    distinct = max(torch.unique(row).numel() for row in y)
    assert distinct <= qmax - qmin + 1
    # the step is no coarser than the range needs: each channel's extremes reach the end levels
    levels = q.round().flatten(1)
    if symmetric:
        assert (levels.abs().amax(dim=1) == qmax).all()
    else:
        assert (levels.amin(dim=1) == qmin).all() and (levels.amax(dim=1) == qmax).all()


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("per_channel", [False, True])
def test_pruned_zeros_stay_exactly_zero(symmetric, per_channel):
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(8, 16, generator=generator) + 0.3
    x[torch.rand(8, 16, generator=generator) < 0.6] = 0.0
    y, _, _ = _quantize(x, 3, symmetric, per_channel)
    assert torch.all(y[x == 0] == 0.0)


def test_straight_through_gradient_is_the_incoming_gradient():
    x = torch.randn(5, 7, requires_grad=True)
    scale, zero_point = quant_params(x, 3)
    incoming = torch.randn(5, 7)
    fake_quantize(x, scale, zero_point, 0, 7).backward(incoming)
    assert torch.equal(x.grad, incoming)
