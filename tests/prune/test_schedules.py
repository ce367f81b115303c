from types import SimpleNamespace

import pytest
import torch
from torch import nn

from deepshrink.data import load_dataset
from deepshrink.models import build_model, make_spec
from deepshrink.prune import attach_full_masks, mask_method, masks_of, prunable_layers
from deepshrink.prune.schedules import (HanCycles, PruneSchedule, agp_amounts, cycle_amounts, linear_amounts,
                                        oneshot_amounts)
from deepshrink.train import Trainer, TrainConfig


def test_amount_schedules():
    assert oneshot_amounts(0.7) == {0: 0.7}
    assert linear_amounts(0.7, 10) == pytest.approx({e: 0.07 * (e + 1) for e in range(10)})
    assert agp_amounts(0.8, 4) == pytest.approx({0: 0.4625, 1: 0.7, 2: 0.7875, 3: 0.8})  # 0.8 (1 - (1 - e/4)^3)
    assert cycle_amounts([0.5, 1.0], 3) == {0: 0.5, 3: 1.0}


def _one_layer(values):
    model = nn.Sequential(nn.Linear(len(values), 1, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([values]))
    return model, SimpleNamespace(model=model, epoch=0)


def _set_underlying(model, values):
    with torch.no_grad():
        model[0].parametrizations.weight.original.copy_(torch.tensor([values]))


def test_linear_schedule_lets_pruned_weights_recover_until_the_final_step():
    model, trainer = _one_layer([0.1, 0.2, 0.3, 0.4])
    hook = PruneSchedule(["0"], mask_method("magnitude"), linear_amounts(0.5, 2), recover=True)
    hook.on_fit_start(trainer)
    hook.on_epoch_start(trainer, 0)  # 25 %: prunes the 0.1
    assert masks_of(model)["0"].tolist() == [[0, 1, 1, 1]]
    assert model[0].parametrizations.weight.original[0, 0] == 0.1  # kept behind the mask
    hook.after_step(trainer)
    assert model[0].parametrizations.weight.original[0, 0] == 0.1  # not fixed yet
    _set_underlying(model, [0.1, 0.02, 0.03, 0.4])  # training shrank two others below it
    hook.on_epoch_start(trainer, 1)  # final, 50 %
    assert masks_of(model)["0"].tolist() == [[1, 0, 0, 1]]
    assert torch.allclose(model[0].weight, torch.tensor([[0.1, 0.0, 0.0, 0.4]]))
    _set_underlying(model, [0.1, 0.5, 0.5, 0.4])  # an optimiser moving the pruned ones
    hook.after_step(trainer)
    assert model[0].parametrizations.weight.original.tolist() == [[pytest.approx(0.1), 0.0, 0.0, pytest.approx(0.4)]]


def test_without_recovery_pruned_weights_stay_pruned():
    model, trainer = _one_layer([0.1, 0.2, 0.3, 0.4])
    hook = PruneSchedule(["0"], mask_method("magnitude"), agp_amounts(0.5, 2))
    hook.on_fit_start(trainer)
    hook.on_epoch_start(trainer, 0)  # 0.5 - 0.5 * 0.125 = 0.4375 -> round(1.75) = 2 pruned
    assert masks_of(model)["0"].tolist() == [[0, 0, 1, 1]]
    _set_underlying(model, [0.1, 0.2, 0.03, 0.4])  # would revive the first two if scores were underlying
    hook.on_epoch_start(trainer, 1)
    assert masks_of(model)["0"].tolist() == [[0, 0, 1, 1]]


def test_han_cycles_adjust_dropout_of_the_following_layer():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 20), nn.Dropout(0.5), nn.Linear(20, 2))
    trainer = SimpleNamespace(model=model, epoch=0)
    hook = HanCycles(["0"], mask_method("magnitude"), [0.75], epochs_per_cycle=2)
    hook.on_fit_start(trainer)
    hook.on_epoch_start(trainer, 0)
    assert model[1].p == pytest.approx(0.5 * (100 / 400) ** 0.5)  # D_o sqrt(C_ir / C_io)
    assert int((model[0].weight != 0).sum()) == 100 and hook.layer_sparsity == {"0": 0.75}
    hook.on_epoch_start(trainer, 1)  # not a pruning epoch: the rate stays
    assert model[1].p == pytest.approx(0.25)
    restored = HanCycles(["0"], mask_method("magnitude"), [0.75], epochs_per_cycle=2)
    restored.load_state_dict(hook.state_dict())
    assert restored.initial == {"0": (0.5, 400)} and restored.layer_sparsity == {"0": 0.75}


def test_linear_schedule_inside_the_trainer_reaches_exact_sparsity():
    train, test = load_dataset("synthetic", "train"), load_dataset("synthetic", "test")
    torch.manual_seed(0)
    model = build_model(make_spec("digits-cnn", in_channels=3, image_size=16, num_classes=4))
    names = list(prunable_layers(model, exclude_first_last=False))
    attach_full_masks(model, names)
    hook = PruneSchedule(names, mask_method("magnitude"), linear_amounts(0.6, 2), recover=True)
    config = TrainConfig(epochs=3, batch_size=64, lr=0.05, weight_decay=5e-3, device="cpu", progress=False)
    result = Trainer(model, train, test, config, hooks=[hook]).fit()
    assert result.history[-1]["sparsity"] == pytest.approx(0.6, abs=1e-3)
    for name, mask in masks_of(model).items():
        module = model.get_submodule(name)
        assert int((mask == 0).sum()) == round(0.6 * mask.numel())
        assert torch.all(module.weight[mask == 0] == 0.0)
        assert torch.all(module.parametrizations.weight.original[mask == 0] == 0.0)
