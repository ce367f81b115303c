"""The quantize job: PTQ without data, fine-tuning with data, the history record."""

import pytest
import torch

from deepshrink.data import load_dataset
from deepshrink.errors import UserError
from deepshrink.models import build_model, load_model, save_model
from deepshrink.pipeline.quantize import quantize_job
from deepshrink.pipeline.train import new_model_info
from deepshrink.quant import QuantConfig, quantizers_of
from deepshrink.train import TrainConfig


@pytest.fixture(scope="module")
def data():
    return load_dataset("synthetic", "train"), load_dataset("synthetic", "test")


@pytest.fixture(scope="module")
def model_file(tmp_path_factory, data):
    info = new_model_info("digits-cnn", data[0])
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "m.safetensors"
    save_model(path, build_model(info.arch), info)
    return path


def test_post_training_quantization_needs_no_data(model_file, tmp_path):
    out = tmp_path / "q.safetensors"
    result = quantize_job(model_file, out, QuantConfig("kmeans", 3), TrainConfig(epochs=0))
    assert result.layers == ["conv2", "conv3"] and result.test_top1 is None
    model, info = load_model(out)
    assert list(quantizers_of(model)) == ["conv2", "conv3"]
    record = info.history[-1]
    assert record["stage"] == "quantize" and record["method"] == "kmeans" and record["bits"] == 3
    assert record["finetune_epochs"] == 0 and record["layers"] == ["conv2", "conv3"]
    assert torch.unique(model.conv2.weight).numel() <= 8


def test_fine_tuning_records_accuracy(model_file, tmp_path, data):
    out = tmp_path / "q.safetensors"
    config = TrainConfig(epochs=1, batch_size=32, lr=0.01, progress=False)
    result = quantize_job(model_file, out, QuantConfig("linear", 4, per_channel=True), config,
                          train_set=data[0].subset(128), test_set=data[1])
    assert 0.0 <= result.test_top1 <= 1.0
    model, info = load_model(out)
    assert info.history[-1]["test_top1"] == result.test_top1 and info.history[-1]["per_channel"] is True
    assert [record["stage"] for record in info.history] == ["train", "quantize"]  # fine-tuning, then the stage


def test_fine_tuning_without_data_is_a_user_error(model_file, tmp_path):
    with pytest.raises(UserError, match="needs training data"):
        quantize_job(model_file, tmp_path / "q.safetensors", QuantConfig("linear", 4), TrainConfig(epochs=1))
    assert not (tmp_path / "q.safetensors").exists()
