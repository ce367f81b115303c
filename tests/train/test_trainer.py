import pytest
import torch
from torch import nn

from deepshrink.data import load_dataset
from deepshrink.errors import UserError
from deepshrink.models import load_model
from deepshrink.pipeline.train import new_model_info, train_job
from deepshrink.train import Trainer, TrainConfig, TrainHook, TrainingDiverged


@pytest.fixture(scope="module")
def synthetic():
    return load_dataset("synthetic", "train"), load_dataset("synthetic", "test")


def _config(**overrides):
    base = dict(epochs=4, batch_size=32, lr=0.05, schedule="cosine", seed=3, progress=False,
                eval_batch_size=64)
    return TrainConfig(**{**base, **overrides})


def _train(synthetic, out_dir=None, config=None, hooks=(), resume=False):
    train_set, test_set = synthetic
    return train_job(train_set, test_set, config or _config(), model_name="digits-cnn",
                     out_dir=out_dir, resume=resume, hooks=hooks)


def test_learns_the_synthetic_set_and_writes_run_files(synthetic, tmp_path):
    trainer, result = _train(synthetic, tmp_path)
    assert result.final.top1 >= 0.9
    assert [r["epoch"] for r in result.history] == [1, 2, 3, 4]
    assert {p.name for p in tmp_path.iterdir()} >= {"last.ckpt", "best.safetensors", "model.safetensors", "metrics.jsonl"}
    model, info = load_model(tmp_path / "model.safetensors")
    for key, value in trainer.model.state_dict().items():
        assert torch.equal(model.state_dict()[key], value.cpu())
    assert info.history[-1]["stage"] == "train" and info.history[-1]["test_top1"] == result.final.top1


def test_a_run_without_a_terminal_logs_one_line_per_epoch(synthetic, capsys):
    train_set, test_set = synthetic[0].subset(64), synthetic[1].subset(32)
    train_job(train_set, test_set, _config(epochs=2, progress=None), model_name="digits-cnn")
    lines = capsys.readouterr().err.strip().splitlines()  # captured stderr is not a terminal
    assert [line.split(":")[0] for line in lines] == ["epoch 1/2", "epoch 2/2"]
    assert "train loss" in lines[0] and "test top-1" in lines[1] and lines[1].endswith(" s")
    train_job(train_set, test_set, _config(epochs=1, progress=False), model_name="digits-cnn")
    assert capsys.readouterr().err == ""  # asked for silence


def test_same_seed_same_weights(synthetic):
    a, _ = _train(synthetic, config=_config(epochs=2))
    b, _ = _train(synthetic, config=_config(epochs=2))
    for (ka, va), (kb, vb) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
        assert torch.equal(va, vb), ka


def test_resume_after_interrupt_gives_identical_weights(synthetic, tmp_path, crash_in):
    straight, straight_result = _train(synthetic, tmp_path / "straight")
    with pytest.raises(KeyboardInterrupt):
        _train(synthetic, tmp_path / "cut", hooks=[crash_in(epoch=2)])
    resumed, resumed_result = _train(synthetic, tmp_path / "cut", resume=True)
    for key, value in straight.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[key], value), key
    assert [r["epoch"] for r in resumed_result.history] == [1, 2, 3, 4]
    assert resumed_result.final.top1 == straight_result.final.top1


def test_resume_refuses_changed_settings_and_missing_checkpoint(synthetic, tmp_path):
    _train(synthetic, tmp_path, config=_config(epochs=1))
    with pytest.raises(UserError, match="lr was 0.05, now 0.1"):
        _train(synthetic, tmp_path, config=_config(epochs=1, lr=0.1), resume=True)
    with pytest.raises(UserError, match="nothing to resume"):
        _train(synthetic, tmp_path / "empty", resume=True)


class _Recorder(TrainHook):
    def __init__(self):
        self.calls = []

    def on_fit_start(self, trainer):
        self.calls.append("fit_start")

    def on_epoch_start(self, trainer, epoch):
        self.calls.append(f"epoch_start{epoch}")

    def loss(self, trainer, inputs, targets, outputs, loss):
        self.calls.append("loss")
        return loss + 0.0

    def after_backward(self, trainer):
        assert all(p.grad is not None for p in trainer.model.parameters())
        self.calls.append("after_backward")

    def after_step(self, trainer):
        self.calls.append("after_step")

    def on_epoch_end(self, trainer, epoch, metrics):
        metrics["hook_metric"] = epoch
        self.calls.append(f"epoch_end{epoch}")

    def on_fit_end(self, trainer):
        self.calls.append("fit_end")


def test_hooks_are_called_in_order_and_can_log(synthetic):
    train_set, test_set = synthetic
    small = train_set.subset(64)
    hook = _Recorder()
    config = _config(epochs=1)
    trainer = Trainer(nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 4)), small, test_set, config, hooks=[hook])
    result = trainer.fit()
    assert hook.calls[:5] == ["fit_start", "epoch_start0", "loss", "after_backward", "after_step"]
    assert hook.calls[-2:] == ["epoch_end0", "fit_end"]
    assert hook.calls.count("after_step") == 2  # 64 images / batch 32
    assert result.history[0]["hook_metric"] == 0


class _PoisonLoss(TrainHook):
    def __init__(self, bad_from_step):
        self.bad_from_step = bad_from_step

    def loss(self, trainer, inputs, targets, outputs, loss):
        return loss * float("nan") if trainer.step >= self.bad_from_step else loss


def test_nan_losses_skip_steps_then_stop_with_checkpoint_intact(synthetic, tmp_path):
    train_set, test_set = synthetic
    config = _config(epochs=3, max_bad_steps=4)
    info = new_model_info("digits-cnn", train_set)
    from deepshrink.models import build_model

    torch.manual_seed(0)
    model = build_model(info.arch)
    steps_per_epoch = len(train_set) // config.batch_size
    trainer = Trainer(model, train_set, test_set, config, out_dir=tmp_path, info=info,
                      hooks=[_PoisonLoss(bad_from_step=steps_per_epoch + 2)])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(TrainingDiverged, match="4 consecutive steps"):
        trainer.fit()
    from deepshrink.train import load_checkpoint

    assert load_checkpoint(tmp_path / "last.ckpt")["epoch"] == 1
    changed = [k for k, v in model.state_dict().items() if "weight" in k and not torch.equal(v, before[k])]
    assert changed  # the good steps did train
