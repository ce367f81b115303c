"""The structured prune job: a model file in, a smaller model file out, with its history."""

import pytest
import torch

from deepshrink.data import load_dataset
from deepshrink.errors import UserError
from deepshrink.models import build_model, load_model, save_model
from deepshrink.pipeline.evaluate import accuracy_on
from deepshrink.pipeline.structured_prune import structured_prune_job
from deepshrink.pipeline.train import new_model_info
from deepshrink.prune.structured import StructuredConfig
from deepshrink.train import TrainConfig


@pytest.fixture
def model_file(tmp_path):
    train = load_dataset("synthetic", "train")
    info = new_model_info("resnet20", train, {"width": 8})
    torch.manual_seed(0)
    path = tmp_path / "dense.safetensors"
    save_model(path, build_model(info.arch), info)
    return path


def test_one_shot_prune_without_data(model_file, tmp_path):
    out = tmp_path / "pruned.safetensors"
    result = structured_prune_job(model_file, out, StructuredConfig(criterion="l1", ratio=0.5),
                                  TrainConfig(epochs=0))
    model, info = load_model(out)
    record = info.history[-1]
    assert record["stage"] == "structured-prune" and record["criterion"] == "l1" and record["ratio"] == 0.5
    assert record["macs_after"] < record["macs_before"] and record["params_after"] < record["params_before"]
    assert record["params_after"] == sum(p.numel() for p in model.parameters())
    assert record["channels"]["layer1.0.conv1"] == [8, 4]
    assert model.layer1[0].conv1.out_channels == 4 and info.arch.overrides
    assert result.test_top1 is None and model(torch.randn(1, 3, 16, 16)).shape == (1, 4)


def test_prune_and_fine_tune(model_file, tmp_path):
    train, test = load_dataset("synthetic", "train").subset(32), load_dataset("synthetic", "test").subset(16)
    out = tmp_path / "tuned.safetensors"
    config = TrainConfig(epochs=1, batch_size=16, lr=0.05, progress=False)
    settings = StructuredConfig(criterion="fpgm", ratio=0.5, li_resnet_rule=True)
    result = structured_prune_job(model_file, out, settings, config, train_set=train, test_set=test)
    _, info = load_model(out)
    assert [h["stage"] for h in info.history][-2:] == ["structured-prune", "train"]
    assert info.history[-2]["channels"]["layer3.2.conv1"] == [32, 16]
    assert 0.0 <= result.test_top1 <= 1.0 and result.test_top1_before is not None


def test_fine_tuning_needs_data(model_file, tmp_path):
    with pytest.raises(UserError, match="needs training data"):
        structured_prune_job(model_file, tmp_path / "x.safetensors", StructuredConfig(ratio=0.5), TrainConfig(epochs=1))
    assert not (tmp_path / "x.safetensors").exists()


def _gradual_run(model_file, out, run_dir=None, resume=False, hooks=()):
    train, test = load_dataset("synthetic", "train").subset(48), load_dataset("synthetic", "test").subset(16)
    config = TrainConfig(epochs=3, batch_size=16, lr=0.05, progress=False)
    settings = StructuredConfig(criterion="l1", ratio=0.5, li_resnet_rule=True, schedule="linear", prune_epochs=2)
    return structured_prune_job(model_file, out, settings, config, train_set=train, test_set=test,
                                run_dir=run_dir, resume=resume, hooks=hooks)


def test_gradual_schedule_prunes_while_fine_tuning_and_removes_after(model_file, tmp_path):
    out = tmp_path / "gradual.safetensors"
    result = _gradual_run(model_file, out)
    model, info = load_model(out)
    assert [h["stage"] for h in info.history][-2:] == ["train", "structured-prune"]
    record = info.history[-1]
    assert record["schedule"] == "linear" and record["prune_epochs"] == 2 and record["epochs"] == 3
    assert record["channels"]["layer3.2.conv1"] == [32, 16] and model.layer3[2].conv1.out_channels == 16
    assert record["params_after"] == sum(p.numel() for p in model.parameters())
    test = load_dataset("synthetic", "test").subset(16)
    assert result.test_top1 == accuracy_on(model, info, test, torch.device("cpu"), 64)  # the smaller model's


def test_gradual_run_resumes_after_the_ramp_to_the_same_model(model_file, tmp_path, crash_in):
    whole = tmp_path / "whole.safetensors"
    _gradual_run(model_file, whole, run_dir=tmp_path / "a")
    resumed = tmp_path / "resumed.safetensors"
    with pytest.raises(KeyboardInterrupt):  # killed in epoch 2, after the plan was fixed in epoch 1
        _gradual_run(model_file, resumed, run_dir=tmp_path / "b", hooks=[crash_in(epoch=2, after_steps=1)])
    _gradual_run(model_file, resumed, run_dir=tmp_path / "b", resume=True)
    (a, _), (b, _) = load_model(whole), load_model(resumed)
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), name
