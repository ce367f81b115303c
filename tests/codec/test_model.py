import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from deepshrink.codec import decode_model, encode_model, from_bytes, to_bytes
from deepshrink.errors import UserError
from deepshrink.models import InputSpec, ModelInfo, build_model, make_spec
from deepshrink.models.attach import register_parametrization
from deepshrink.prune import WeightMask


def test_round_trip_gives_identical_tensors_and_outputs(compressed):
    model, info = compressed
    encoded = encode_model(model, info)
    decoded, back = decode_model(from_bytes(to_bytes(encoded)))
    layers = {layer.key: layer for layer in encoded.layers}
    assert set(layers) == {"conv1.weight", "conv2.weight", "conv3.weight", "fc.weight"}
    assert layers["conv1.weight"].raw is not None and layers["conv1.weight"].layout == "dense"
    assert layers["conv2.weight"].codebook.shape == (1, 17) and layers["conv2.weight"].layout == "sparse"
    assert layers["conv3.weight"].codebook.shape[0] == 64
    assert layers["fc.weight"].raw is not None and layers["fc.weight"].layout == "sparse"
    for key, tensor in decoded.state_dict().items():
        module_name, _, attr = key.rpartition(".")
        assert torch.equal(tensor, getattr(model.get_submodule(module_name), attr)), key
    assert not parametrize.is_parametrized(decoded.conv2)
    x = torch.randn(8, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(decoded(x), model(x))
    assert back.parametrizations == [] and back.history[-1]["stage"] == "encode"
    assert back.classes == info.classes and info.history == []


def test_history_floats_are_stored_to_six_significant_digits(compressed):
    model, info = compressed
    record = {"stage": "prune", "layers": {"conv2": 0.7209201388888888}, "lr": 0.01, "epochs": 20,
              "curve": [0.9148148148148149, None], "note": "0.123456789"}
    exact_input = InputSpec(info.input.shape, (0.4913725490196078,), (0.2470322324632819,))
    long_info = ModelInfo(info.arch, exact_input, info.classes, info.dataset, [record])
    _, back = decode_model(from_bytes(to_bytes(encode_model(model, long_info))))
    assert back.history[0] == {"stage": "prune", "layers": {"conv2": 0.72092}, "lr": 0.01, "epochs": 20,
                               "curve": [0.914815, None], "note": "0.123456789"}  # text and ints untouched
    assert back.input == exact_input  # normalisation constants are not provenance: never rounded


def test_float16_storage_rounds_the_other_tensors(compressed):
    model, info = compressed
    decoded, _ = decode_model(from_bytes(to_bytes(encode_model(model, info, float_dtype="float16"))))
    assert torch.equal(decoded.bn1.weight, model.bn1.weight.half().float())
    assert torch.equal(decoded.bn3.running_var, model.bn3.running_var.half().float())
    assert torch.equal(decoded.fc.bias, model.fc.bias.half().float())
    # unquantized weights, dense (conv1) and sparse (fc), are stored as float16 too
    assert torch.equal(decoded.conv1.weight, model.conv1.weight.half().float())
    assert torch.equal(decoded.fc.weight, model.fc.weight.half().float())
    assert not torch.equal(decoded.conv1.weight, model.conv1.weight)  # the rounding is real
    # codebooks are float16 too (file version 3): quantized weights decode to rounded centroids
    assert torch.equal(decoded.conv2.weight, model.conv2.weight.half().float())
    assert torch.equal(decoded.conv3.weight, model.conv3.weight.half().float())
    assert not torch.equal(decoded.conv3.weight, model.conv3.weight)
    assert decoded.bn1.num_batches_tracked.item() == 7


def test_real_pruning_and_quantization_round_trip():
    from deepshrink import prune, quant  # part of the package: an import error must fail, not skip

    for config in (quant.QuantConfig(method="kmeans", bits=4), quant.QuantConfig(bits=5, per_channel=True)):
        spec = make_spec("digits-cnn")
        torch.manual_seed(1)
        model = build_model(spec)
        prune.attach_masks(model, {"conv2": (torch.rand_like(model.conv2.weight) > 0.7).float()})
        quant.quantize_(model, config)
        model.eval()
        encoded = encode_model(model, ModelInfo(spec, InputSpec((1, 8, 8), (0.3,), (0.4,))))
        layers = {layer.key: layer for layer in encoded.layers}
        # the real quantizers' codebooks are used (not the exact-float fallback): 2**bits levels
        # (+ the zero column), one row per channel when per_channel
        for key in ("conv2.weight", "conv3.weight"):
            rows, size = layers[key].codebook.shape
            channels = model.get_submodule(key.rpartition(".")[0]).weight.shape[0]
            assert rows == (channels if config.per_channel else 1), config
            assert size <= 2**config.bits + 1, config
        assert layers["conv2.weight"].layout == "sparse", config
        decoded, _ = decode_model(encoded)
        x = torch.randn(4, 1, 8, 8)
        with torch.no_grad():
            assert torch.equal(decoded(x), model(x)), config


@register_parametrization("test-sign")
class Sign(nn.Module):
    """A quantizer kind of this test only: each weight becomes +-(mean |w|) (the
    QuantizedRepresentation protocol, nothing else shared with deepshrink's quantizers)."""

    def forward(self, w):
        codebook, indices = self.quantized_representation(w)
        return codebook[0, indices]

    def quantized_representation(self, original):
        magnitude = original.abs().mean()
        return torch.stack([-magnitude, magnitude]).view(1, 2), (original > 0).long()

    def spec(self):
        return {}

    @classmethod
    def from_spec(cls, tensor, args):
        return cls()


class Double(nn.Module):
    def forward(self, w):
        return 2 * w


def test_a_quantizer_of_a_new_kind_is_found_where_it_sits_on_the_chain():
    """scale -> Sign -> mask on conv2: the quantizer is neither first nor last, its input is the
    scaled weight, and the mask after it only zeroes values, so the codec stores its codebook."""
    spec = make_spec("digits-cnn")
    torch.manual_seed(2)
    model = build_model(spec).eval()
    mask = (torch.rand_like(model.conv2.weight) > 0.6).float()
    for step in (Double(), Sign(), WeightMask(mask)):
        parametrize.register_parametrization(model.conv2, "weight", step, unsafe=True)
    encoded = encode_model(model, ModelInfo(spec, InputSpec((1, 8, 8), (0.3,), (0.4,))))
    layer = next(layer for layer in encoded.layers if layer.key == "conv2.weight")
    magnitude = 2 * model.conv2.parametrizations.weight.original.abs().mean()
    assert layer.raw is None  # coded from the quantizer's codebook, plus the zero column of the mask
    assert sorted(layer.codebook.flatten().tolist()) == sorted([0.0, -magnitude.item(), magnitude.item()])
    decoded, _ = decode_model(from_bytes(to_bytes(encoded)))
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(decoded.conv2.weight, model.conv2.weight)
        assert torch.equal(decoded(x), model(x))


def test_unknown_float_storage_is_a_user_error(compressed):
    model, info = compressed
    with pytest.raises(UserError, match="float storage"):
        encode_model(model, info, float_dtype="bfloat16")


def test_values_out_of_float16_range_are_a_user_error(compressed):
    model, info = compressed
    with torch.no_grad():
        model.bn1.running_var[0] = 1e6
    with pytest.raises(UserError, match="bn1.running_var: a value is out of float16 range"):
        encode_model(model, info, float_dtype="float16")
    with torch.no_grad():
        model.bn1.running_var[0] = 1.0
        model.conv1.weight[0, 0, 0, 0] = 1e6
    with pytest.raises(UserError, match="conv1.weight: a value is out of float16 range"):
        encode_model(model, info, float_dtype="float16")


def test_activation_quantizers_are_not_stored_and_the_record_says_so(compressed):
    from deepshrink.models.attach import copy_model
    from deepshrink.quant.activation import attach_activation_quantizers, calibrate_activations

    model, info = compressed
    model = copy_model(model)
    attach_activation_quantizers(model, ["conv2", "conv3"], bits=8)
    calibrate_activations(model, [torch.randn(8, 1, 8, 8)])
    info = ModelInfo.from_dict(info.to_dict())
    info.activation_quantizers = [{"module": "conv2", "role": "input", "args": {}}]  # as a saved file has it
    decoded, back = decode_model(from_bytes(to_bytes(encode_model(model, info))))
    assert back.activation_quantizers == []
    assert back.history[-1]["dropped_activation_quantizers"] == 1
    assert torch.equal(decoded.conv2.weight, model.conv2.weight)


@pytest.mark.parametrize("float_dtype", ["float32", "float16"])
def test_batchnorm_as_inference_affine_halves_its_bytes_and_keeps_outputs(compressed, float_dtype):
    model, info = compressed
    plain = encode_model(model, info, float_dtype=float_dtype)
    affine = encode_model(model, info, float_dtype=float_dtype, bn_affine=True)
    item = 4 if float_dtype == "float32" else 2
    channels = sum(bn.num_features for bn in (model.bn1, model.bn2, model.bn3))
    # per BatchNorm: mean and var (C each) and the int64 batch counter are gone
    assert len(plain.other) - len(affine.other) == 2 * channels * item + 3 * 8
    assert [layer.key for layer in affine.layers] == [layer.key for layer in plain.layers]
    assert affine.info.history[-1]["bn_affine"] is True and affine.bn_affine
    decoded, _ = decode_model(from_bytes(to_bytes(affine)))
    scale = model.bn2.weight / torch.sqrt(model.bn2.running_var + model.bn2.eps)
    shift = model.bn2.bias - model.bn2.running_mean * scale
    tolerance = dict(rtol=1e-6, atol=1e-6) if float_dtype == "float32" else dict(rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(decoded.bn2.weight, scale.detach(), **tolerance)
    torch.testing.assert_close(decoded.bn2.bias, shift.detach(), **tolerance)
    assert torch.equal(decoded.bn2.running_mean, torch.zeros(decoded.bn2.num_features))
    assert torch.equal(decoded.bn2.running_var + decoded.bn2.eps, torch.ones(decoded.bn2.num_features))
    assert decoded.bn2.num_batches_tracked.item() == 0
    reference, _ = decode_model(from_bytes(to_bytes(plain)))  # the same rounding of the weights
    x = torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(decoded(x), reference(x), **tolerance)
