from types import SimpleNamespace

import pytest
import torch
from torch import nn

from deepshrink.errors import UserError
from deepshrink.prune import attach_masks
from deepshrink.prune.regularizers import (L1, L2, BatchNormL1, DeepHoyer, GroupLasso, ProximalL1, TrimmedL1)

W = torch.tensor([[3.0, -1.0, 0.5], [-4.0, 2.0, 0.0]])
STRENGTH = 0.1


def _layer(values=W):
    layer = nn.Linear(values.shape[1], values.shape[0], bias=False)
    with torch.no_grad():
        layer.weight.copy_(values)
    return layer


def _grad(hook, layer):
    """Gradient of the hook's added loss w.r.t. the layer's weight, and the added amount."""
    base = torch.zeros(())
    total = hook.loss(None, None, None, None, base)
    total.backward()
    return layer.weight.grad, float(total.detach())


def test_l1_and_l2_match_hand_gradients():
    layer = _layer()
    grad, value = _grad(L1([layer], STRENGTH), layer)
    assert value == pytest.approx(0.1 * 10.5)
    assert torch.allclose(grad, 0.1 * torch.sign(W))
    layer = _layer()
    grad, value = _grad(L2([layer], STRENGTH), layer)
    assert value == pytest.approx(0.1 * 30.25)
    assert torch.allclose(grad, 0.2 * W)


def test_group_lasso_per_filter_and_per_channel():
    layer = _layer()
    grad, value = _grad(GroupLasso([layer], STRENGTH, "filter"), layer)
    rows = W.norm(dim=1, keepdim=True)  # sqrt(10.25), sqrt(20)
    assert value == pytest.approx(0.1 * float(rows.sum()))
    assert torch.allclose(grad, 0.1 * W / rows)
    layer = _layer()
    grad, value = _grad(GroupLasso([layer], STRENGTH, "channel"), layer)
    cols = W.norm(dim=0, keepdim=True)  # 5, sqrt(5), 0.5
    assert value == pytest.approx(0.1 * float(cols.sum()))
    assert torch.allclose(grad, 0.1 * W / cols)


def test_group_lasso_on_conv_filters_and_zero_groups():
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, 3, bias=False)
    with torch.no_grad():
        conv.weight[1] = 0
    grad, value = _grad(GroupLasso([conv], 1.0, "filter"), conv)
    norms = conv.weight.detach().flatten(1).norm(dim=1)
    assert value == pytest.approx(float(norms[0] + norms[2]))  # one norm per whole 2x3x3 filter
    assert torch.allclose(grad[0], conv.weight[0].detach() / norms[0])
    assert torch.all(grad[1] == 0)  # the subgradient 0 at an all-zero filter, not NaN
    assert torch.allclose(grad[2], conv.weight[2].detach() / norms[2])
    conv.weight.grad = None
    grad, value = _grad(GroupLasso([conv], 1.0, "channel"), conv)  # input channel i: W[:, i]
    columns = conv.weight.detach().transpose(0, 1).flatten(1).norm(dim=1)
    assert value == pytest.approx(float(columns.sum()))
    assert torch.allclose(grad, conv.weight.detach() / columns.view(1, 2, 1, 1))


def test_deep_hoyer_gradient():
    layer = _layer()
    grad, value = _grad(DeepHoyer([layer], STRENGTH), layer)
    s1, s2 = 10.5, 30.25
    assert value == pytest.approx(0.1 * s1 ** 2 / s2)
    expected = 0.1 * (2 * s1 * torch.sign(W) / s2 - 2 * s1 ** 2 * W / s2 ** 2)
    assert torch.allclose(grad, expected)


def test_trimmed_l1_spares_the_largest():
    layer = _layer()
    grad, value = _grad(TrimmedL1([layer], STRENGTH, keep=2), layer)  # spares 3.0 and -4.0
    assert value == pytest.approx(0.1 * 3.5)
    assert torch.allclose(grad, 0.1 * torch.tensor([[0.0, -1.0, 1.0], [0.0, 1.0, 0.0]]))
    layer = _layer()
    grad, value = _grad(TrimmedL1([layer], STRENGTH, keep=6), layer)  # spares all: no penalty
    assert value == 0.0 and torch.all(grad == 0)
    layer = _layer()
    grad, value = _grad(TrimmedL1([layer], STRENGTH, keep=0), layer)  # spares none: plain L1
    assert value == pytest.approx(0.1 * 10.5)
    with pytest.raises(UserError, match="keep"):
        TrimmedL1([_layer()], STRENGTH, keep=-1)


def test_batchnorm_l1_penalises_only_the_scales():
    model = nn.Sequential(nn.Conv2d(1, 3, 1), nn.BatchNorm2d(3))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([0.5, -2.0, 1.0]))
    hook = BatchNormL1(model, STRENGTH)
    assert hook.modules == [model[1]]
    total = hook.loss(None, None, None, None, torch.zeros(()))
    total.backward()
    assert float(total.detach()) == pytest.approx(0.35)
    assert torch.allclose(model[1].weight.grad, torch.tensor([0.1, -0.1, 0.1]))
    assert model[0].weight.grad is None


def test_proximal_l1_soft_thresholds_by_lr_times_strength():
    layer = _layer(torch.tensor([[0.3, -0.05, 0.1, -0.2]]))
    attach_masks(nn.Sequential(layer), {"0": torch.tensor([[1.0, 1.0, 1.0, 0.0]])})
    ProximalL1([layer], 1.0).after_step(SimpleNamespace(lr=0.1))  # threshold 0.1
    original = layer.parametrizations.weight.original
    assert torch.allclose(original, torch.tensor([[0.2, 0.0, 0.0, 0.0]]))
    assert torch.allclose(layer.weight, torch.tensor([[0.2, 0.0, 0.0, 0.0]]))


def test_bad_strength_and_group():
    for strength in (-1.0, float("nan"), float("inf")):
        with pytest.raises(UserError, match="strength"):
            L1([_layer()], strength)
    with pytest.raises(UserError, match="strength"):
        ProximalL1([_layer()], float("nan"))
    with pytest.raises(UserError, match="group"):
        GroupLasso([_layer()], 0.1, "row")
