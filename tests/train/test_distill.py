"""Knowledge distillation: the loss against a hand computation, the hook, and the train CLI path."""

import json
import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from deepshrink.cli import main
from deepshrink.errors import UserError
from deepshrink.models import read_info
from deepshrink.train import DistillationHook, distillation_loss


def _softmax(z):
    e = [math.exp(v) for v in z]
    return [v / sum(e) for v in e]


def _hand_loss(student, teacher, targets, T, alpha):
    kl = ce = 0.0
    for zs, zt, y in zip(student, teacher, targets):
        ps, pt = _softmax([v / T for v in zs]), _softmax([v / T for v in zt])
        kl += sum(t * math.log(t / s) for t, s in zip(pt, ps))
        ce += -math.log(_softmax(zs)[y])
    n = len(targets)
    return alpha * T * T * kl / n + (1 - alpha) * ce / n


STUDENT = [[1.0, 0.0, -1.0], [0.5, 2.0, 0.0]]
TEACHER = [[0.0, 1.0, 0.5], [3.0, -1.0, 0.0]]
TARGETS = [0, 1]


@pytest.mark.parametrize("T,alpha", [(1.0, 0.5), (2.0, 0.7), (4.0, 1.0), (3.0, 0.0)])
def test_loss_matches_hand_computation(T, alpha):
    loss = distillation_loss(torch.tensor(STUDENT), torch.tensor(TEACHER), torch.tensor(TARGETS), T, alpha)
    assert loss.item() == pytest.approx(_hand_loss(STUDENT, TEACHER, TARGETS, T, alpha), rel=1e-6)


def test_soft_term_carries_the_t_squared_factor():
    s, t, y = torch.tensor(STUDENT), torch.tensor(TEACHER), torch.tensor(TARGETS)
    kl_at_2 = _hand_loss(STUDENT, TEACHER, TARGETS, 2.0, 1.0) / 4.0
    assert distillation_loss(s, t, y, 2.0, 1.0).item() == pytest.approx(4.0 * kl_at_2, rel=1e-6)
    assert distillation_loss(t, t, y, 5.0, 1.0).item() == pytest.approx(0.0, abs=1e-6)


def test_gradient_flows_to_the_student_only():
    s = torch.tensor(STUDENT, requires_grad=True)
    t = torch.tensor(TEACHER, requires_grad=True)
    distillation_loss(s, t, torch.tensor(TARGETS), 2.0, 0.5).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0 and t.grad is None


@pytest.mark.parametrize("T,alpha", [(0.0, 0.5), (-1.0, 0.5), (2.0, 1.5), (2.0, float("nan"))])
def test_bad_settings_are_user_errors(T, alpha):
    with pytest.raises(UserError):
        DistillationHook(nn.Identity(), T, alpha)


class Recorder(nn.Module):
    """A teacher that records its input and returns fixed logits."""

    def forward(self, x):
        self.seen = x.clone()
        return torch.tensor(TEACHER)


def test_hook_replaces_the_loss_and_renormalises_for_the_teacher():
    teacher = Recorder()
    hook = DistillationHook(teacher, 2.0, 0.5, teacher_norm=((0.0,), (1.0,)))
    dataset = SimpleNamespace(mean=(0.5,), std=(0.25,))
    trainer = SimpleNamespace(device=torch.device("cpu"), memory_format=torch.contiguous_format, info=None,
                              train_loader=SimpleNamespace(dataset=dataset))
    hook.on_fit_start(trainer)
    assert not teacher.training
    inputs = torch.randn(2, 1, 2, 2)
    student = torch.tensor(STUDENT)
    loss = hook.loss(trainer, inputs, torch.tensor(TARGETS), student, torch.tensor(123.0))
    assert torch.allclose(teacher.seen, inputs * 0.25 + 0.5)  # back to pixels in [0, 1]
    assert loss.item() == pytest.approx(_hand_loss(STUDENT, TEACHER, TARGETS, 2.0, 0.5), rel=1e-6)


TRAIN = ["train", "--data", "synthetic", "--epochs", "1", "--batch-size", "32", "--limit-train", "64",
         "--limit-test", "32", "--lr", "0.05"]


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher")
    assert main([*TRAIN, "--model", "digits-cnn", "--epochs", "0", "--out", str(out)]) == 0  # untrained will do
    return out / "model.safetensors"


def test_train_cli_distils_from_a_teacher(teacher_file, tmp_path, capsys):
    code = main([*TRAIN, "--model", "lenet300", "--out", str(tmp_path), "--teacher", str(teacher_file),
                 "--kd-temperature", "3", "--kd-alpha", "0.8"])
    assert code == 0 and "final test top-1" in capsys.readouterr().out
    history = read_info(tmp_path / "model.safetensors").history
    assert history[0]["stage"] == "distill" and history[-1]["stage"] == "train"
    assert (history[0]["temperature"], history[0]["alpha"]) == (3.0, 0.8)
    assert history[0]["teacher"].startswith("digits-cnn")
    assert json.dumps(history)


def _fails(capsys, argv, needle):
    try:
        code = main(argv)
    except SystemExit as exc:  # argument errors exit from argparse
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1


def test_train_cli_rejects_bad_distillation_settings(teacher_file, tmp_path, capsys):
    student = [*TRAIN, "--model", "lenet300", "--out", str(tmp_path)]
    _fails(capsys, [*student, "--teacher", str(teacher_file), "--kd-alpha", "1.5"], "alpha")
    _fails(capsys, [*student, "--kd-temperature", "2"], "need --teacher")


def test_train_cli_rejects_a_teacher_for_other_images(tmp_path, capsys):
    digits = tmp_path / "digits"
    assert main(["train", "--model", "digits-cnn", "--data", "digits", "--epochs", "0", "--out", str(digits)]) == 0
    code = main([*TRAIN, "--model", "lenet300", "--out", str(tmp_path / "s"),
                 "--teacher", str(digits / "model.safetensors")])
    assert code == 2 and "expects 1x8x8 images" in capsys.readouterr().err
