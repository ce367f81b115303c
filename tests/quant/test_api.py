"""quantize_ / finalize: layer selection, pruning awareness, configuration errors, QAT."""

import pytest
import torch
from torch.nn.utils import parametrize

from deepshrink.data import load_dataset
from deepshrink.errors import UserError
from deepshrink.models import build_model, make_spec
from deepshrink.prune import attach_masks, magnitude_mask
from deepshrink.quant import (KMeansQuantizer, LinearQuantizer, QuantConfig, finalize, quantize_,
                              quantizers_of)
from deepshrink.train import Trainer, TrainConfig


def _model(seed=0):
    torch.manual_seed(seed)
    return build_model(make_spec("digits-cnn", num_classes=4, in_channels=3, image_size=16))


def test_first_conv_and_classifier_stay_float_by_default():
    model = quantize_(_model(), QuantConfig("linear", 4))
    assert list(quantizers_of(model)) == ["conv2", "conv3"]
    assert not parametrize.is_parametrized(model.conv1) and not parametrize.is_parametrized(model.fc)


def test_exclusions_are_configurable():
    model = quantize_(_model(), QuantConfig("linear", 4, exclude=("conv3",), exclude_first_last=False))
    assert list(quantizers_of(model)) == ["conv1", "conv2", "fc"]
    with pytest.raises(UserError, match="QuantConfig.exclude pattern 'nothing.' matches no"):
        quantize_(_model(), QuantConfig("linear", 4, exclude=("nothing*",)))


@pytest.mark.parametrize("kwargs,needle", [
    ({"method": "linear", "bits": 9}, "2..8 or 16"),
    ({"method": "linear", "bits": 1}, "2..8 or 16"),
    ({"method": "kmeans", "bits": 16}, "2..8"),
    ({"method": "kmeans", "bits": 4, "symmetric": True}, "linear quantization"),
    ({"method": "kmeans", "bits": 4, "init": "kmeans++"}, "QuantConfig.init must be one of"),
    ({"method": "float", "bits": 4}, "QuantConfig.method must be one of linear, kmeans, got 'float'"),
    ({"method": "linear", "bits": True}, "QuantConfig.bits must be one of 2..8 or 16"),
])
def test_bad_configurations_are_user_errors(kwargs, needle):
    with pytest.raises(UserError, match=needle):
        QuantConfig(**kwargs)


def test_quantizing_twice_is_a_user_error():
    model = quantize_(_model(), QuantConfig("linear", 4))
    with pytest.raises(UserError, match="already quantized"):
        quantize_(model, QuantConfig("kmeans", 4))


@pytest.mark.parametrize("method", ["linear", "kmeans"])
def test_pruned_weights_stay_zero_after_quantization(method):
    model = _model()
    attach_masks(model, {"conv2": magnitude_mask(model.conv2.weight, 0.7)})
    pruned = model.conv2.weight == 0
    assert pruned.float().mean() == pytest.approx(0.7, abs=0.01)
    quantize_(model, QuantConfig(method, 2))
    chain = model.conv2.parametrizations.weight
    assert type(chain[-1]) is (LinearQuantizer if method == "linear" else KMeansQuantizer)  # after the mask
    assert torch.equal(model.conv2.weight == 0, pruned)


def test_finalize_bakes_quantized_values_into_plain_weights():
    model = quantize_(_model(), QuantConfig("kmeans", 2))
    quantized = model.conv2.weight.detach().clone()
    x = torch.randn(2, 3, 16, 16)
    expected = model.eval()(x)
    finalize(model)
    assert not parametrize.is_parametrized(model.conv2) and quantizers_of(model) == {}
    assert torch.equal(model.conv2.weight, quantized) and model.conv2.weight.requires_grad
    assert torch.equal(model(x), expected)


@pytest.mark.parametrize("method", ["linear", "kmeans"])
def test_fine_tuning_with_the_trainer(method):
    train, test = load_dataset("synthetic", "train"), load_dataset("synthetic", "test")
    model = quantize_(_model(), QuantConfig(method, 3))
    underlying = model.conv2.parametrizations.weight.original.detach().clone()
    quantized = model.conv2.weight.detach().clone()
    config = TrainConfig(epochs=1, batch_size=32, lr=0.01, progress=False)
    Trainer(model, train, test, config).fit()
    moved = not torch.equal(model.conv2.parametrizations.weight.original, underlying)
    assert moved == (method == "linear")  # QAT trains the float weights; k-means only its centroids
    assert not torch.equal(model.conv2.weight, quantized)  # either way the quantized weight changed
    if method == "kmeans":
        quantizer = model.conv2.parametrizations.weight[0]
        assert torch.equal(model.conv2.weight, quantizer.centroids[quantizer.indices].detach())
    assert torch.unique(model.conv2.weight).numel() <= 8


@pytest.mark.parametrize("kwargs,needle", [
    ({"activation_bits": 1}, "2..8 or 16"),
    ({"activation_bits": 8, "activation_observer": "fixed"}, "QuantConfig.activation_observer must be one of"),
])
def test_bad_activation_settings_are_user_errors(kwargs, needle):
    with pytest.raises(UserError, match=needle):
        QuantConfig("linear", 8, **kwargs)


def test_activation_bits_quantize_the_inputs_of_the_same_layers():
    from deepshrink.quant import activation_quantizers_of, calibrate_activations

    config = QuantConfig("kmeans", 4, activation_bits=6, activation_observer="ema")
    model = quantize_(_model(), config)
    quantizers = activation_quantizers_of(model)
    assert list(quantizers) == ["conv2.input_quantizer", "conv3.input_quantizer"]
    assert all(q.bits == 6 and q.observer.name == "ema" and not q.frozen for q in quantizers.values())
    record = config.to_dict()
    assert record["activation_bits"] == 6 and record["activation_observer"] == "ema"
    weights_only = QuantConfig("linear", 4).to_dict()
    assert weights_only["activation_bits"] is None and "activation_observer" not in weights_only
    calibrate_activations(model, [torch.randn(4, 3, 16, 16)])
    with pytest.raises(UserError, match="already quantized"):
        quantize_(model, config)


def test_qat_with_activation_quantizers():
    from deepshrink.quant import activation_quantizers_of, calibrate_activations

    train = load_dataset("synthetic", "train").subset(64)
    model = quantize_(_model(), QuantConfig("linear", 4, activation_bits=4, activation_observer="ema"))
    calibrate_activations(model, [torch.randn(8, 3, 16, 16) * 0.1])  # a range far from the data's
    quantizer = activation_quantizers_of(model)["conv2.input_quantizer"]
    calibrated = quantizer.scale.clone()
    Trainer(model, train, None, TrainConfig(epochs=1, batch_size=32, lr=0.01, progress=False)).fit()
    assert quantizer.frozen and int(quantizer.observer.batches) == 1 + 2  # calibration + 2 steps
    assert not torch.equal(quantizer.scale, calibrated)  # the EMA followed the training activations
