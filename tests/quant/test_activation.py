"""Activation quantizers: levels, ReLU6's fixed scale, the STE, calibration, QAT updates, and
survival through save/load and copy_model."""

import pytest
import torch
from torch import nn

from deepshrink.errors import UserError
from deepshrink.models import build_model, load_model, make_spec, read_info, save_model
from deepshrink.models.attach import copy_model
from deepshrink.models.file import InputSpec, ModelInfo
from deepshrink.quant import QuantConfig, quantize_
from deepshrink.quant.activation import (ActivationQuantizer, activation_quantizers_of,
                                        attach_activation_quantizers, calibrate_activations,
                                        describe_activation_quantizers, remove_activation_quantizers,
                                        restore_activation_quantizers)
from deepshrink.quant.observers import MovingAverageObserver


def _hand_quantize(x, lo, hi, bits):
    """Asymmetric fake quantization written out independently of deepshrink.quant.linear."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = (hi - lo) / (2 ** bits - 1)
    zero_point = round(-lo / scale)
    q = torch.clamp(torch.round(x / scale) + zero_point, 0, 2 ** bits - 1)
    return scale * (q - zero_point)


def _net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Conv2d(2, 3, 3)).eval()


def test_levels_scale_and_zero_point_by_hand():
    quantizer = ActivationQuantizer(2).eval()  # eval: the frozen range stays (training would update it)
    quantizer(torch.tensor([-1.0, 0.5, 2.0]))  # calibrating: observed range [-1, 2]
    quantizer.freeze()
    # 2 bits, levels 0..3: scale = 3 / 3 = 1, zero point = round(1 / 1) = 1
    assert quantizer.scale.item() == 1.0 and quantizer.zero_point.item() == 1.0
    x = torch.tensor([-1.0, -0.4, 0.3, 0.6, 2.0, 5.0, -7.0])
    assert quantizer(x).tolist() == [-1.0, 0.0, 0.0, 1.0, 2.0, 2.0, -1.0]


def test_positive_range_is_widened_to_contain_zero():
    quantizer = ActivationQuantizer(8).eval()
    quantizer(torch.tensor([2.0, 5.1]))
    quantizer.freeze()
    assert quantizer.zero_point.item() == 0.0
    assert quantizer.scale.item() == pytest.approx(5.1 / 255)


def test_symmetric_levels():
    quantizer = ActivationQuantizer(3, symmetric=True).eval()
    quantizer(torch.tensor([-1.5, 3.0]))
    quantizer.freeze()  # levels -3..3, scale = 3 / 3
    assert quantizer.scale.item() == 1.0 and quantizer.zero_point.item() == 0.0
    assert quantizer(torch.tensor([-4.0, -1.4, 2.6])).tolist() == [-3.0, -1.0, 3.0]


@pytest.mark.parametrize("bits", [8, 4])
def test_relu6_outputs_get_the_fixed_range(bits):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU6()).eval()
    attached = attach_activation_quantizers(model, [], bits)
    assert list(attached) == ["1.output_quantizer"]
    quantizer = model[1].output_quantizer
    assert quantizer.frozen  # no calibration needed
    assert quantizer.scale.item() == pytest.approx(6.0 / (2 ** bits - 1), rel=1e-7)
    assert quantizer.zero_point.item() == 0.0
    x = torch.randn(2, 1, 6, 6) * 10
    out = model(x)
    expected = _hand_quantize(torch.clamp(model[0](x), 0, 6), 0.0, 6.0, bits)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
    levels = out / quantizer.scale
    torch.testing.assert_close(levels, levels.round(), rtol=0, atol=1e-4)


def test_straight_through_gradient_inside_the_range():
    quantizer = ActivationQuantizer(4).eval()
    quantizer(torch.tensor([-2.0, 2.0]))
    quantizer.freeze()
    x = torch.tensor([-1.7, -0.2, 0.33, 1.9], requires_grad=True)
    incoming = torch.tensor([0.5, -1.0, 2.0, 3.0])
    quantizer(x).backward(incoming)
    assert torch.equal(x.grad, incoming)


def test_calibration_passes_through_then_freezing_quantizes():
    model = _net()
    reference = _net()
    attach_activation_quantizers(model, ["0", "2"], 8)
    generator = torch.Generator().manual_seed(1)
    batches = [torch.randn(3, 1, 7, 7, generator=generator) for _ in range(2)]
    x = torch.randn(2, 1, 7, 7, generator=generator)
    assert torch.equal(model(x), reference(x))  # calibrating: no quantization yet
    model.train()
    assert calibrate_activations(model, [(b, None) for b in batches]) == 6
    assert model.training  # mode restored
    model.eval()
    inputs = torch.cat(batches)
    hidden = reference[1](reference[0](inputs))
    expected_hidden = reference[1](reference[0](_hand_quantize(x, inputs.min().item(), inputs.max().item(), 8)))
    expected = reference[2](_hand_quantize(expected_hidden, hidden.min().item(), hidden.max().item(), 8))
    out = model(x)
    assert not torch.equal(out, reference(x))
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)
    q = model[0].input_quantizer
    torch.testing.assert_close(q.scale, (inputs.max() - inputs.min()) / 255)


def test_training_mode_keeps_updating_the_range_eval_mode_does_not():
    model = _net()
    attach_activation_quantizers(model, ["0"], 8, "ema", observer_args={"momentum": 0.5})
    calibrate_activations(model, [torch.ones(1, 1, 7, 7)])  # range [0, 1]
    quantizer = model[0].input_quantizer
    frozen_scale = quantizer.scale.clone()
    model(torch.full((1, 1, 7, 7), 3.0))  # eval: nothing moves
    assert torch.equal(quantizer.scale, frozen_scale)
    model.train()
    model(torch.full((1, 1, 7, 7), 3.0))  # QAT: hi = 1 + 0.5 * (3 - 1) = 2
    assert quantizer.observer.hi.item() == 2.0
    assert quantizer.scale.item() == pytest.approx(2.0 / 255)


def test_spec_round_trip_and_describe_restore():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU6(), nn.Conv2d(2, 2, 3)).eval()
    attach_activation_quantizers(model, ["2"], 6, "percentile", observer_args={"percentile": 99.0})
    calibrate_activations(model, [torch.randn(4, 1, 8, 8)])
    records = describe_activation_quantizers(model)
    assert [(r["module"], r["role"]) for r in records] == [("1", "output"), ("2", "input")]
    assert records[1]["args"] == {"bits": 6, "symmetric": False, "observer": "percentile", "frozen": True,
                                  "observer_args": {"percentile": 99.0, "max_samples": 1 << 18, "seed": 0}}
    clone = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU6(), nn.Conv2d(2, 2, 3)).eval()
    restore_activation_quantizers(clone, records)
    assert not any(q.training for q in activation_quantizers_of(clone).values())  # follow their layer
    clone.load_state_dict(model.state_dict())
    x = torch.randn(2, 1, 8, 8)
    assert torch.equal(clone(x), model(x))
    with pytest.raises(UserError, match="does not have"):
        restore_activation_quantizers(clone, [{"module": "9", "role": "input", "args": records[1]["args"]}])
    with pytest.raises(UserError, match="two input quantizers"):
        restore_activation_quantizers(clone, records[1:])


def _zoo_model():
    torch.manual_seed(0)
    spec = make_spec("digits-cnn", num_classes=4, in_channels=3, image_size=16)
    return build_model(spec), ModelInfo(spec, InputSpec((3, 16, 16), (0.5,) * 3, (0.25,) * 3))


def test_save_load_round_trip_keeps_identical_outputs(tmp_path):
    model, info = _zoo_model()
    quantize_(model, QuantConfig("linear", 4, activation_bits=5, activation_observer="ema"))
    calibrate_activations(model, [torch.randn(8, 3, 16, 16) for _ in range(3)])
    model.eval()
    x = torch.randn(4, 3, 16, 16)
    expected = model(x)
    save_model(tmp_path / "m.safetensors", model, info)
    loaded, loaded_info = load_model(tmp_path / "m.safetensors")
    assert [r["module"] for r in loaded_info.activation_quantizers] == ["conv2", "conv3"]
    assert list(activation_quantizers_of(loaded)) == ["conv2.input_quantizer", "conv3.input_quantizer"]
    assert all(q.frozen for q in activation_quantizers_of(loaded).values())
    assert torch.equal(loaded(x), expected)
    assert isinstance(loaded.conv2.input_quantizer.observer, MovingAverageObserver)


def test_files_without_activation_quantizers_keep_their_layout(tmp_path):
    model, info = _zoo_model()
    save_model(tmp_path / "m.safetensors", model, info)
    assert "activation_quantizers" not in info.to_dict()
    loaded, loaded_info = load_model(tmp_path / "m.safetensors")
    assert loaded_info.activation_quantizers == [] and activation_quantizers_of(loaded) == {}
    assert read_info(tmp_path / "m.safetensors").activation_quantizers == []


def test_copy_model_keeps_quantizers_and_removal_restores_float_activations():
    model, _ = _zoo_model()
    weights_only = quantize_(copy_model(model), QuantConfig("kmeans", 3)).eval()
    quantize_(model, QuantConfig("kmeans", 3, activation_bits=4))
    calibrate_activations(model, [torch.randn(8, 3, 16, 16)])
    model.eval()
    x = torch.randn(2, 3, 16, 16)
    expected = model(x)
    assert not torch.equal(expected, weights_only(x))
    clone = copy_model(model)
    assert torch.equal(clone(x), expected)
    assert clone.conv2.input_quantizer is not model.conv2.input_quantizer
    remove_activation_quantizers(clone)
    assert activation_quantizers_of(clone) == {} and not clone.conv2._forward_pre_hooks
    assert torch.equal(clone(x), weights_only(x))
    assert torch.equal(model(x), expected)  # the original keeps its quantizers


def test_mistakes_are_user_errors():
    model = _net()
    with pytest.raises(UserError, match="no activation quantizers"):
        calibrate_activations(model, [torch.randn(1, 1, 7, 7)])
    attach_activation_quantizers(model, ["0"], 8)
    with pytest.raises(UserError, match="already quantizes"):
        attach_activation_quantizers(model, ["0"], 8)
    with pytest.raises(UserError, match="no layer"):
        attach_activation_quantizers(model, ["7"], 8)
    with pytest.raises(UserError, match="at least one image"):
        calibrate_activations(model, [])
    with pytest.raises(UserError, match="2..8 or 16"):
        ActivationQuantizer(9)
    with pytest.raises(RuntimeError, match="calibrate"):
        ActivationQuantizer(8).freeze()


def test_half_precision_inputs_keep_their_dtype_and_float32_levels():
    quantizer = ActivationQuantizer(16).eval()
    quantizer(torch.tensor([-1.0, 3.0]))
    quantizer.freeze()
    x = torch.linspace(-1, 3, 513).half()
    out = quantizer(x)
    assert out.dtype == torch.float16
    assert torch.equal(out, quantizer(x.float()).half())
