from collections import OrderedDict
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from deepshrink.data import load_dataset
from deepshrink.errors import UserError
from deepshrink.models.early_exit import EarlyExitModel
from deepshrink.train import Trainer, TrainConfig
from deepshrink.train.early_exit import EarlyExitLoss


def _model(classes=4):
    torch.manual_seed(0)
    backbone = nn.Sequential(OrderedDict(
        stage1=nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()),
        stage2=nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, stride=2), nn.BatchNorm2d(8), nn.ReLU()),
        pool=nn.AdaptiveAvgPool2d(1), flat=nn.Flatten(), fc=nn.Linear(8, classes)))
    return EarlyExitModel(backbone, ["stage1", "stage2"], classes, input_shape=(3, 16, 16))


def _cross_entropy(logits, targets):
    """mean_n (log Σ_c exp z[n, c] - z[n, y_n]), by hand."""
    return (logits.exp().sum(1).log() - logits[torch.arange(len(targets)), targets]).mean()


def test_joint_loss_is_the_final_ce_plus_the_weighted_exit_ces():
    model = _model()
    x, y = torch.randn(6, 3, 16, 16), torch.tensor([0, 1, 2, 3, 0, 1])
    outputs = model(x)
    final_ce = _cross_entropy(outputs, y)
    trainer = SimpleNamespace(model=model, config=TrainConfig(label_smoothing=0.0), out_dir=None)
    hook = EarlyExitLoss(weights=[0.5, 2.0])
    hook.on_fit_start(trainer)
    loss = hook.loss(trainer, x, y, outputs, final_ce)
    first, second = model.exit_logits
    expected = final_ce + 0.5 * _cross_entropy(first, y) + 2.0 * _cross_entropy(second, y)
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert all(head[2].weight.grad.abs().sum() > 0 for head in model.exits)


def _fit(hooks):
    model = _model()
    before = [head[2].weight.detach().clone() for head in model.exits]
    train = load_dataset("synthetic", "train").subset(64)
    config = TrainConfig(epochs=1, batch_size=32, lr=0.05, progress=False, device="cpu")
    result = Trainer(model, train, None, config, hooks=hooks).fit()
    changed = [not torch.equal(b, head[2].weight) for b, head in zip(before, model.exits)]
    return changed, result.history[0]["train_loss"]


def test_the_trainer_trains_the_exits_only_through_the_hook():
    joint_changed, joint_loss = _fit([EarlyExitLoss()])
    alone_changed, alone_loss = _fit([])
    assert joint_changed == [True, True] and alone_changed == [False, False]
    assert joint_loss > alone_loss + 2.0  # two more cross-entropies, each about log(4) at the start


def test_refuses_a_plain_model_wrong_weights_and_an_output_folder_without_the_spec(tmp_path):
    config = TrainConfig()
    with pytest.raises(UserError, match="EarlyExitModel"):
        EarlyExitLoss().on_fit_start(SimpleNamespace(model=nn.Linear(2, 2), config=config, out_dir=None))
    with pytest.raises(UserError, match="weights"):
        EarlyExitLoss([1.0]).on_fit_start(SimpleNamespace(model=_model(), config=config, out_dir=None))
    with pytest.raises(UserError, match="early-exit spec"):  # its model files would not reload
        EarlyExitLoss().on_fit_start(SimpleNamespace(model=_model(), config=config, out_dir=tmp_path, info=None))
    with pytest.raises(UserError):
        EarlyExitLoss([-1.0, 1.0])


def test_an_output_folder_is_fine_with_the_models_early_exit_spec(tmp_path):
    from deepshrink.models import InputSpec, ModelInfo, make_spec
    from deepshrink.models.early_exit import early_exit_spec

    backbone = make_spec("digits-cnn", num_classes=4, in_channels=3, image_size=16)
    model = _model()
    right = ModelInfo(early_exit_spec(backbone, ["stage1", "stage2"]), InputSpec((3, 16, 16), (0.5,) * 3, (0.2,) * 3))
    wrong = ModelInfo(early_exit_spec(backbone, ["stage1"]), right.input)
    EarlyExitLoss().on_fit_start(SimpleNamespace(model=model, config=TrainConfig(), out_dir=tmp_path, info=right))
    with pytest.raises(UserError, match="early-exit spec"):
        EarlyExitLoss().on_fit_start(SimpleNamespace(model=model, config=TrainConfig(), out_dir=tmp_path, info=wrong))
