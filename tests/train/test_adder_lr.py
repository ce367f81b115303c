import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from deepshrink.data import load_dataset
from deepshrink.errors import UserError
from deepshrink.models.layers import AdderConv2d
from deepshrink.train import Trainer, TrainConfig
from deepshrink.train.adder_lr import DEFAULT_ETA, AdderLearningRate, adder_weights


def _model():
    return nn.Sequential(AdderConv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 4))


def test_rescales_each_adder_gradient_by_eta_sqrt_k_over_its_norm():
    model = _model()
    grad = torch.zeros(4, 3, 3, 3)
    grad[0, 0, 0, :2] = torch.tensor([3.0, 4.0])  # ‖g‖₂ = 5, k = 108
    model[0].weight.grad = grad.clone()
    model[5].weight.grad = torch.ones(4, 4)
    AdderLearningRate(eta=0.2).after_backward(SimpleNamespace(model=model))
    alpha = 0.2 * math.sqrt(108) / 5
    torch.testing.assert_close(model[0].weight.grad, grad * alpha)
    assert model[0].weight.grad[0, 0, 0, 1].item() == pytest.approx(4 * 0.2 * 10.392304845 / 5)
    torch.testing.assert_close(model[5].weight.grad, torch.ones(4, 4))  # not an adder layer


def test_a_zero_gradient_stays_zero():
    model = _model()
    model[0].weight.grad = torch.zeros(4, 3, 3, 3)
    AdderLearningRate().after_backward(SimpleNamespace(model=model))
    assert torch.equal(model[0].weight.grad, torch.zeros(4, 3, 3, 3))


class _Double(nn.Module):
    def forward(self, weight):
        return 2 * weight


def test_finds_the_trainable_tensor_under_a_parametrization():
    model = _model()
    parametrize.register_parametrization(model[0], "weight", _Double())
    assert adder_weights(model) == [model[0].parametrizations.weight.original]


def test_an_sgd_step_moves_each_adder_layer_by_lr_eta_sqrt_k():
    torch.manual_seed(0)
    model = _model()
    before = model[0].weight.detach().clone()
    train = load_dataset("synthetic", "train").subset(64)
    config = TrainConfig(epochs=1, batch_size=len(train), lr=0.1, momentum=0.0, weight_decay=0.0,
                         schedule="constant", progress=False, augment=False, device="cpu")
    Trainer(model, train, None, config, hooks=[AdderLearningRate()]).fit()
    moved = torch.linalg.vector_norm(model[0].weight.detach() - before).item()
    assert moved == pytest.approx(0.1 * DEFAULT_ETA * math.sqrt(108), rel=1e-4)


def test_eta_must_be_positive():
    with pytest.raises(UserError):
        AdderLearningRate(eta=0.0)
