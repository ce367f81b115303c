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
    with pytest.raises(UserError, match="matches no"):
        quantize_(_model(), QuantConfig("linear", 4, exclude=("nothing*",)))


@pytest.mark.parametrize("kwargs,needle", [
    ({"method": "linear", "bits": 9}, "2..8 or 16"),
    ({"method": "linear", "bits": 1}, "2..8 or 16"),
    ({"method": "kmeans", "bits": 16}, "2..8"),
    ({"method": "kmeans", "bits": 4, "symmetric": True}, "linear quantization"),
    ({"method": "kmeans", "bits": 4, "init": "kmeans++"}, "unknown k-means init"),
    ({"method": "float", "bits": 4}, "unknown quantization method"),
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
    config = TrainConfig(epochs=1, batch_size=32, lr=0.01, progress=False)
    Trainer(model, train, test, config).fit()
    moved = not torch.equal(model.conv2.parametrizations.weight.original, underlying)
    assert moved == (method == "linear")  # QAT trains the float weights; k-means only its centroids
    assert torch.unique(model.conv2.weight).numel() <= 8
