import math

import pytest
import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from deepshrink.models import build_model, make_spec
from deepshrink.models.layers import AdderConv2d, adder2d


def _reference(x, weight, bias, stride, padding):
    """Y[n, o, i, j] = -Σ |window - W[o]| + b[o], one window at a time."""
    kh, kw = weight.shape[2:]
    xp = F.pad(x, (padding, padding, padding, padding))
    out_h = (xp.shape[2] - kh) // stride + 1
    out_w = (xp.shape[3] - kw) // stride + 1
    out = torch.empty(x.shape[0], weight.shape[0], out_h, out_w)
    for n in range(x.shape[0]):
        for o in range(weight.shape[0]):
            for i in range(out_h):
                for j in range(out_w):
                    window = xp[n, :, i * stride:i * stride + kh, j * stride:j * stride + kw]
                    out[n, o, i, j] = -(window - weight[o]).abs().sum() + bias[o]
    return out


def test_forward_matches_a_direct_loop():
    torch.manual_seed(0)
    layer = AdderConv2d(2, 3, 3, stride=2, padding=1, bias=True)
    nn.init.normal_(layer.bias)
    x = torch.randn(2, 2, 5, 6)
    with torch.no_grad():
        expected = _reference(x, layer.weight, layer.bias, 2, 1)
        out = layer(x)
    assert out.shape == F.conv2d(x, layer.weight, stride=2, padding=1).shape == (2, 3, 3, 3)
    torch.testing.assert_close(out, expected)


def test_gradients_are_the_papers_full_precision_and_hardtanh_ones():
    # x = [x0, x1, x2], a 1x2 filter [w0, w1], stride 1: two outputs
    # y0 = -|x0 - w0| - |x1 - w1|,  y1 = -|x1 - w0| - |x2 - w1|
    x = torch.tensor([[[[0.5, -2.0, 1.0]]]], requires_grad=True)
    w = torch.tensor([[[[1.0, 0.25]]]], requires_grad=True)
    y = adder2d(x, w)
    torch.testing.assert_close(y.detach(), torch.tensor([[[[-2.75, -3.75]]]]))
    g0, g1 = 2.0, -1.0
    y.backward(torch.tensor([[[[g0, g1]]]]))
    # dL/dW = Σ g·(X - W), not g·sign(X - W)
    dw0 = g0 * (0.5 - 1.0) + g1 * (-2.0 - 1.0)    # -1.0 + 3.0
    dw1 = g0 * (-2.0 - 0.25) + g1 * (1.0 - 0.25)   # -4.5 - 0.75
    torch.testing.assert_close(w.grad, torch.tensor([[[[dw0, dw1]]]]))
    # dL/dX = Σ g·HT(W - X), HT clipping to [-1, 1]
    dx0 = g0 * 0.5                               # HT(1 - 0.5)
    dx1 = g0 * 1.0 + g1 * 1.0                    # HT(0.25 + 2) = 1, HT(1 + 2) = 1
    dx2 = g1 * -0.75                             # HT(0.25 - 1)
    torch.testing.assert_close(x.grad, torch.tensor([[[[dx0, dx1, dx2]]]]))


def test_chunked_passes_equal_the_unchunked_ones():
    torch.manual_seed(1)
    x = torch.randn(5, 3, 7, 7).contiguous(memory_format=torch.channels_last).requires_grad_()
    results = []
    for chunk_bytes in (2**30, 1):  # one chunk; one image and one output channel at a time
        layer = AdderConv2d(3, 4, 3, padding=1, bias=False, chunk_bytes=chunk_bytes)
        with torch.no_grad():
            layer.weight.copy_(torch.linspace(-2, 2, layer.weight.numel()).view_as(layer.weight))
        x.grad = None
        out = layer(x)
        out.backward(torch.cos(torch.arange(out.numel(), dtype=torch.float32)).view_as(out))
        results.append((out.detach(), x.grad.clone(), layer.weight.grad.clone()))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-4)


def test_weight_gradient_is_the_same_with_or_without_an_input_gradient():
    torch.manual_seed(2)
    layer = AdderConv2d(2, 2, 3, bias=False)
    x = torch.randn(2, 2, 4, 4)
    layer(x).sum().backward()  # the input needs no gradient: only the weight's is computed
    without = layer.weight.grad.clone()
    layer.weight.grad = None
    x.requires_grad_()
    layer(x).sum().backward()
    torch.testing.assert_close(layer.weight.grad, without)
    assert x.grad.abs().sum() > 0


def test_output_variance_is_far_larger_than_a_convolutions_and_batchnorm_normalises_it():
    # The paper's variance analysis: with X ~ N(0, σx²) and filters W ~ N(0, σw²),
    # Var[Y_conv] = J·σx²·σw², Var[Y_adder] = J·(1 - 2/π)·(σx² + σw²) (J window elements),
    # so for the small weights of a CNN the adder output varies far more.
    torch.manual_seed(0)
    x = torch.randn(16, 16, 16, 16)
    layer = AdderConv2d(16, 32, 3, bias=False)
    nn.init.kaiming_normal_(layer.weight)  # a CNN's weights: σw² = 2 / J
    window = 16 * 9
    var_w = 2 / window
    with torch.no_grad():
        adder_out = layer(x)
        conv_out = F.conv2d(x, layer.weight)
    assert adder_out.max() <= 0
    assert conv_out.var().item() == pytest.approx(window * var_w, rel=0.1)               # 2.0
    assert adder_out.var().item() == pytest.approx(window * (1 - 2 / math.pi) * (1 + var_w), rel=0.1)  # ≈ 53
    assert adder_out.var() > 20 * conv_out.var()
    normalised = nn.BatchNorm2d(32)(adder_out)  # training mode: batch statistics
    torch.testing.assert_close(normalised.mean((0, 2, 3)), torch.zeros(32), atol=1e-4, rtol=0)
    torch.testing.assert_close(normalised.var((0, 2, 3), unbiased=False), torch.ones(32), atol=1e-3, rtol=0)


def test_adder_resnet20_replaces_the_stage_convolutions_only():
    model = build_model(make_spec("adder-resnet20", num_classes=4, image_size=8, width=4))
    plain = build_model(make_spec("resnet20", num_classes=4, image_size=8, width=4))
    adders = [name for name, m in model.named_modules() if isinstance(m, AdderConv2d)]
    convs = [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    assert len(adders) == 18 and all(name.startswith("layer") for name in adders)
    assert convs == ["conv1"] and isinstance(model.linear, nn.Linear)
    assert {k: v.shape for k, v in model.state_dict().items()} == {k: v.shape for k, v in plain.state_dict().items()}
    out = model(torch.randn(2, 3, 8, 8))
    assert out.shape == (2, 4)
    out.sum().backward()
    assert model.layer3[2].conv2.weight.grad.abs().sum() > 0
    traced = torch.fx.symbolic_trace(model)
    model.eval()
    x = torch.randn(1, 3, 8, 8)
    torch.testing.assert_close(traced(x), model(x))


def test_adder_resnet20_projection_shortcuts_are_adders_too():
    model = build_model(make_spec("adder-resnet20", shortcut="B"))
    assert isinstance(model.layer2[0].shortcut[0], AdderConv2d)
    assert model.layer2[0].shortcut[0].kernel_size == (1, 1)
