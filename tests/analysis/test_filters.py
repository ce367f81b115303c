"""Image filters on synthetic edges, and matching first-layer kernels to them."""

import pytest
import torch
from torch import nn

from deepshrink.analysis.filters import (KERNELS, average_pool, gradient_magnitude, laplacian,
                                         match_first_layer, max_pool, sobel)
from deepshrink.errors import UserError


def _vertical_step(size=8, at=4):
    """(1, 1, size, size): 0 left of column ``at``, 1 from it on (an edge along H)."""
    image = torch.zeros(1, 1, size, size)
    image[..., at:] = 1.0
    return image


def test_vertical_edge_gives_gx_only_along_the_edge():
    gx, gy = sobel(_vertical_step())
    assert torch.count_nonzero(gy) == 0
    # columns 3 and 4 straddle the edge: each sees 1·(1 + 2 + 1) = 4 across the step
    assert torch.equal(gx[0, 0, :, 3], torch.full((8,), 4.0))
    assert torch.equal(gx[0, 0, :, 4], torch.full((8,), 4.0))
    assert torch.count_nonzero(gx) == 16


def test_horizontal_edge_gives_gy_and_magnitude_combines_both():
    image = _vertical_step().transpose(-1, -2)
    gx, gy = sobel(image)
    assert torch.count_nonzero(gx) == 0 and torch.equal(gy[0, 0, 3], torch.full((8,), 4.0))
    diagonal = torch.triu(torch.ones(1, 1, 8, 8))
    gx, gy = sobel(diagonal)
    assert torch.allclose(gradient_magnitude(diagonal), torch.sqrt(gx**2 + gy**2))
    # at (3, 3) the 3x3 window is [[1, 1, 1], [0, 1, 1], [0, 0, 1]]: Gx = 2·1 + 1·1 = 3, Gy = -(1 + 2) = -3
    assert (gx[0, 0, 3, 3].item(), gy[0, 0, 3, 3].item()) == (3.0, -3.0)
    assert gradient_magnitude(diagonal)[0, 0, 3, 3].item() == pytest.approx(18**0.5)
    assert torch.equal(gradient_magnitude(_vertical_step()), sobel(_vertical_step())[0].abs())


def test_laplacians_on_a_step_and_a_dot():
    lap4 = laplacian(_vertical_step(), 4)[0, 0]
    assert torch.equal(lap4[:, 3], torch.ones(8)) and torch.equal(lap4[:, 4], -torch.ones(8))
    assert torch.count_nonzero(lap4) == 16
    dot = torch.zeros(1, 1, 5, 5)
    dot[..., 2, 2] = 1.0
    assert laplacian(dot, 8)[0, 0, 2, 2] == -8 and laplacian(dot, 8)[0, 0, 1, 1] == 1
    assert laplacian(dot, 4)[0, 0, 1, 1] == 0 and laplacian(dot, 4)[0, 0, 1, 2] == 1
    with pytest.raises(UserError):
        laplacian(dot, 6)


def test_constant_image_gives_no_response_at_the_borders():
    flat = torch.full((2, 3, 6, 6), 0.7)
    assert torch.count_nonzero(sobel(flat)[0]) == 0
    assert torch.allclose(laplacian(flat, 8), torch.zeros_like(flat), atol=1e-6)


def test_pooling():
    image = torch.arange(16.0).view(1, 1, 4, 4)
    assert torch.equal(max_pool(image)[0, 0], torch.tensor([[5.0, 7.0], [13.0, 15.0]]))
    assert torch.equal(average_pool(image)[0, 0], torch.tensor([[2.5, 4.5], [10.5, 12.5]]))


def test_first_layer_kernels_are_matched_to_filters():
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Conv2d(3, 3, 3))
    with torch.no_grad():
        model[0].weight[0] = KERNELS["sobel_x"]            # both input channels
        model[0].weight[1] = -2 * KERNELS["laplacian4"]    # inverted
        noise = torch.randn(2, 3, 3, generator=torch.Generator().manual_seed(0))
        model[0].weight[2] = KERNELS["sobel_y"] + 0.01 * noise
    matches = match_first_layer(model)
    assert [m.filter for m in matches] == ["sobel_x", "laplacian4", "sobel_y"]
    assert matches[0].similarity == pytest.approx(1.0)
    assert matches[1].similarity == pytest.approx(-1.0)
    assert matches[0].scores["sobel_y"] == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(UserError):
        match_first_layer(nn.Sequential(nn.Linear(2, 2)))
