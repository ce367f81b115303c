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


def _conv_inputs(model_file, weights, images, layer):
    """The inputs to ``layer`` on ``images`` of the model with only its weights quantized as
    ``weights`` says, normalised by hand from the model file's statistics (the oracle for the
    calibrated range)."""
    from deepshrink.quant import quantize_

    model, info = load_model(model_file)
    quantize_(model, weights)
    mean = torch.tensor(info.input.mean).view(1, -1, 1, 1)
    std = torch.tensor(info.input.std).view(1, -1, 1, 1)
    captured = []
    model.get_submodule(layer).register_forward_pre_hook(lambda module, args: captured.append(args[0]))
    with torch.no_grad():
        model((images.float() / 255 - mean) / std)
    return torch.cat(captured)


def test_activation_quantization_calibrates_on_training_images(model_file, tmp_path, data):
    from deepshrink.quant import activation_quantizers_of

    out = tmp_path / "q.safetensors"
    config = QuantConfig("kmeans", 4, activation_bits=8)
    result = quantize_job(model_file, out, config, TrainConfig(epochs=0, eval_batch_size=24),
                          train_set=data[0], test_set=data[1].subset(50), calibration_images=60)
    record = result.record
    assert record["activation_bits"] == 8 and record["activation_observer"] == "minmax"
    assert record["calibration_images"] == 60 and 0.0 <= result.test_top1 <= 1.0
    model, info = load_model(out)
    quantizers = activation_quantizers_of(model)
    assert list(quantizers) == ["conv2.input_quantizer", "conv3.input_quantizer"]
    for layer in ("conv2", "conv3"):
        seen = _conv_inputs(model_file, QuantConfig("kmeans", 4), data[0].images[:60], layer)
        observer = quantizers[f"{layer}.input_quantizer"].observer
        torch.testing.assert_close(observer.lo, seen.min(), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(observer.hi, seen.max(), rtol=1e-5, atol=1e-6)
        assert quantizers[f"{layer}.input_quantizer"].frozen


def test_activation_quantization_then_qat(model_file, tmp_path, data):
    out = tmp_path / "q.safetensors"
    config = TrainConfig(epochs=1, batch_size=32, lr=0.01, progress=False)
    result = quantize_job(model_file, out, QuantConfig("linear", 4, activation_bits=4, activation_observer="ema"),
                          config, train_set=data[0].subset(64), test_set=data[1].subset(50), calibration_images=32)
    assert result.record["calibration_images"] == 32 and 0.0 <= result.test_top1 <= 1.0
    model, info = load_model(out)
    assert info.history[-1]["activation_observer"] == "ema"
    assert int(model.conv2.input_quantizer.observer.batches) == 1 + 2  # calibration batch + 2 QAT steps


@pytest.mark.parametrize("kwargs,needle", [({}, "calibration images"), ({"calibration_images": 0}, ">= 1")])
def test_activation_quantization_needs_calibration_data(model_file, tmp_path, data, kwargs, needle):
    if kwargs:
        kwargs["train_set"] = data[0]
    with pytest.raises(UserError, match=needle):
        quantize_job(model_file, tmp_path / "q.safetensors", QuantConfig("linear", 8, activation_bits=8),
                     TrainConfig(epochs=0), **kwargs)
    assert not (tmp_path / "q.safetensors").exists()


RANKS_SCRIPT = """
import sys
import torch
from safetensors.torch import save_file
from deepshrink.data import load_dataset
from deepshrink.models import load_model
from deepshrink.pipeline.quantize import calibrate_on, share_codebooks_from_main
from deepshrink.quant import QuantConfig, quantize_
from deepshrink.train.distributed import current, init_from_env

def quantized(model_file, rank):
    # each rank clusters slightly different weights and calibrates on its own images
    model, info = load_model(model_file)
    with torch.no_grad():
        model.conv2.weight.mul_(1.0 + 0.1 * rank)
    quantize_(model, QuantConfig("kmeans", 3, activation_bits=8))
    share_codebooks_from_main(model)
    images = load_dataset("synthetic", "train").subset(torch.arange(48 * rank, 48 * rank + 48))
    calibrate_on(model, info, images, torch.device("cpu"), batch_size=16)
    return {k: v.contiguous() for k, v in model.state_dict().items()}

if __name__ == "__main__":
    init_from_env("cpu")
    rank = current().rank
    save_file(quantized(sys.argv[1], rank), f"{sys.argv[2]}/rank{rank}.safetensors")
"""


@pytest.mark.slow
def test_torchrun_ranks_take_rank_0_codebooks_and_ranges(model_file, tmp_path):
    import importlib.util
    import socket
    import subprocess
    import sys

    from safetensors.torch import load_file

    script = tmp_path / "ranks.py"
    script.write_text(RANKS_SCRIPT)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                           "--master-addr", "127.0.0.1", "--master-port", str(port), str(script),
                           str(model_file), str(tmp_path)], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rank0, rank1 = load_file(tmp_path / "rank0.safetensors"), load_file(tmp_path / "rank1.safetensors")
    spec = importlib.util.spec_from_file_location("ranks", script)
    ranks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ranks)
    alone0, alone1 = ranks.quantized(model_file, 0), ranks.quantized(model_file, 1)  # single process
    keys = [k for k in rank0 if "centroids" in k or "indices" in k or "input_quantizer" in k]
    assert any(not torch.equal(alone0[k], alone1[k]) for k in keys if "centroids" in k)
    assert any(not torch.equal(alone0[k], alone1[k]) for k in keys if k.endswith("input_quantizer.scale"))
    for key in keys:
        assert torch.equal(rank1[key], rank0[key]), key
        assert torch.equal(rank0[key], alone0[key]), key


def test_mixed_precision_meets_a_budget_between_the_uniform_sizes(model_file, tmp_path, data):
    from deepshrink.pipeline.quantize import MixedPrecision
    from deepshrink.quant.mixed import model_size_bytes

    model, _ = load_model(model_file)
    config = QuantConfig("linear", 8, per_channel=True)
    size = {bits: model_size_bytes(model, {"conv2": bits, "conv3": bits}, config) for bits in (2, 8)}
    budget = (size[2] + size[8]) // 2
    out = tmp_path / "q.safetensors"
    result = quantize_job(model_file, out, config, TrainConfig(epochs=0), train_set=data[0], test_set=data[1],
                          calibration_images=64, mixed=MixedPrecision(budget, "loss", (2, 8)))
    record = result.record
    assert record["size_bytes"] <= budget and record["calibration_images"] == 64
    assert sorted(record["assignment"].values()) == [2, 8]  # one layer each: both at 8 would not fit
    quantized, info = load_model(out)
    assert {name: q.bits for name, q in quantizers_of(quantized).items()} == record["assignment"]
    assert record["size_bytes"] == model_size_bytes(model, record["assignment"], config)
    with pytest.raises(UserError, match="needs calibration images"):
        quantize_job(model_file, tmp_path / "x.safetensors", config, TrainConfig(epochs=0),
                     mixed=MixedPrecision(budget))
    assert not (tmp_path / "x.safetensors").exists()


def test_fine_tuning_an_early_exit_model_trains_its_exits(tmp_path, data):
    from deepshrink.models.early_exit import EarlyExitModel, early_exit_spec

    info = new_model_info("digits-cnn", data[0])
    info.arch = early_exit_spec(info.arch, ["bn1", "pool"])
    torch.manual_seed(0)
    source = save_model(tmp_path / "exits.safetensors", build_model(info.arch), info)
    before, _ = load_model(source)
    config = TrainConfig(epochs=1, batch_size=32, lr=0.01, progress=False)
    quantize_job(source, tmp_path / "q.safetensors", QuantConfig("linear", 8), config, train_set=data[0].subset(128))
    after, info = load_model(tmp_path / "q.safetensors")
    assert isinstance(after, EarlyExitModel) and after.exit_points == ["bn1", "pool"]
    for head_before, head_after in zip(before.exits, after.exits, strict=True):
        assert not torch.equal(head_before[2].bias, head_after[2].bias)  # biases are never quantized
    x = torch.randn(2, *info.input.shape)
    assert len([after(x), *after.exit_logits]) == 3
