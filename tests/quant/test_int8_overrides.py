"""int8 ONNX export that uses the model's own quantizers: the int8 weights are the model's levels
(BatchNorm folded in), the activations use the model's scale and zero point, and ONNX Runtime's
int8 outputs follow the fake-quantized torch model more closely than a recalibrated export.

The error bounds hold on x86 CPUs with and without VNNI. Without VNNI (AVX2 only) ORT's
uint8 x int8 kernels saturate the int16 sum of two products, which hurts full-range int8
weights (ORT's recalibrated ones) but not the model's 4-bit levels; the ratios below are
measured on both kinds of CPU (see the comments)."""

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from torch import nn
from torch.nn.utils import parametrize

from deepshrink.cli import main
from deepshrink.data import BatchLoader, load_dataset
from deepshrink.models import InputSpec, ModelInfo, build_model, make_spec, save_model
from deepshrink.models.attach import copy_model
from deepshrink.quant import (KMeansQuantizer, LinearQuantizer, QuantConfig, attach_activation_quantizers,
                              calibrate_activations, quantize_, remove_activation_quantizers)
from deepshrink.quant.int8 import export_int8_onnx
from deepshrink.quant.int8_overrides import int8_weight_levels, model_overrides, module_of_node
from deepshrink.quant.onnx_export import export_onnx, load_onnx

SPEC = make_spec("digits-cnn", num_classes=4, in_channels=3, image_size=16)
LAYERS = ("conv1", "conv2", "conv3", "fc")
BATCHNORM_OF = {"conv1": "bn1", "conv2": "bn2", "conv3": "bn3"}


def _randomise_batchnorm(model: nn.Module) -> None:
    """Non-trivial BatchNorm statistics (some negative gammas), so that folding them into the
    convolutions changes every output channel's scale and sometimes its sign."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            n = module.num_features
            module.weight.data = torch.rand(n) + 0.5
            module.weight.data[::5] *= -1
            module.bias.data = 0.3 * torch.randn(n)
            module.running_mean = 0.1 * torch.randn(n)
            module.running_var = torch.rand(n) * 1.5 + 0.5


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A digits CNN with 4-bit symmetric per-channel weights and calibrated 8-bit activations
    on every layer, exported with the model's parameters and recalibrated."""
    root = tmp_path_factory.mktemp("int8")
    train, test = load_dataset("synthetic", "train"), load_dataset("synthetic", "test")
    info = ModelInfo(SPEC, InputSpec((3, 16, 16), train.mean, train.std), dataset="synthetic")
    calibration = [x for x, _ in BatchLoader(train.subset(128), 64, mean=info.input.mean, std=info.input.std)]
    inputs = torch.cat([x for x, _ in BatchLoader(test, 128, mean=info.input.mean, std=info.input.std)])
    torch.manual_seed(0)
    model = build_model(SPEC)
    _randomise_batchnorm(model)
    model.eval()
    quantize_(model, QuantConfig(bits=4, symmetric=True, per_channel=True, activation_bits=8,
                                 exclude_first_last=False))
    calibrate_activations(model, calibration)
    own = export_int8_onnx(model, info, root / "own.onnx", calibration)
    recalibrated = export_int8_onnx(model, info, root / "recal.onnx", calibration, use_model_quantizers=False)
    return model, info, calibration, inputs, own, recalibrated


def _graph(path):
    graph = onnx.load(str(path))
    values = {init.name: numpy_helper.to_array(init) for init in graph.graph.initializer}
    producers = {out: node for node in graph.graph.node for out in node.output}
    return graph, values, producers


def _dequantize_feeding(path, node_name: str, index: int):
    """(integer values, scale, zero point) of the DequantizeLinear feeding input ``index`` of
    node ``node_name``."""
    graph, values, producers = _graph(path)
    node = next(n for n in graph.graph.node if n.name == node_name)
    dq = producers[node.input[index]]
    assert dq.op_type == "DequantizeLinear"
    source = producers.get(dq.input[0])
    if source is not None:  # an activation: Q -> DQ
        assert source.op_type == "QuantizeLinear"
        return None, values[dq.input[1]], values[dq.input[2]]
    return values[dq.input[0]], values[dq.input[1]], values[dq.input[2]]


def _output_step(path) -> float:
    """The scale of the int8 quantization ORT put on the logits (one output level)."""
    graph, values, producers = _graph(path)
    dq = producers["logits"]
    return float(values[dq.input[1]])


def test_every_layer_is_int8_and_ort_runs_it(setup):
    *_, own, _ = setup
    graph, _, producers = _graph(own)
    layers = [n for n in graph.graph.node if n.op_type in ("Conv", "Gemm")]
    assert len(layers) == 4
    for node in layers:
        assert producers[node.input[0]].op_type == "DequantizeLinear"
        assert producers[node.input[1]].op_type == "DequantizeLinear"
    outputs = {name for layer in layers for name in layer.output}
    consumers = [n.op_type for n in graph.graph.node if outputs & set(n.input)]
    assert len(consumers) == 4 and set(consumers) == {"QuantizeLinear"}
    int8_model, back = load_onnx(own)
    assert int8_model(setup[3][:4]).shape == (4, 4)
    used = back.history[-1]["model_quantizers"]
    assert used["weights"] == list(LAYERS)
    assert used["activations"] == [f"{name}.input_quantizer" for name in LAYERS]
    assert used["left_to_calibration"] == {}


def test_int8_weights_decode_to_the_batchnorm_folded_quantized_weights(setup):
    model, *_, own, recalibrated = setup
    for name in LAYERS:
        layer = model.get_submodule(name)
        weight = layer.weight.detach().double()  # the fake-quantized weight
        if name in BATCHNORM_OF:
            bn = model.get_submodule(BATCHNORM_OF[name])
            factor = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
            weight = weight * factor.detach().view(-1, 1, 1, 1)
        node = f"/{name}/Conv" if name in BATCHNORM_OF else f"/{name}/Gemm"
        levels, scale, zero_point = _dequantize_feeding(own, node, 1)
        assert levels.dtype == np.int8 and not zero_point.any()
        assert np.abs(levels).max() <= 7  # the 4-bit grid, not ORT's [-127, 127]
        shape = (-1,) + (1,) * (levels.ndim - 1)
        decoded = levels.astype(np.float64) * scale.astype(np.float64).reshape(shape)
        np.testing.assert_allclose(decoded, weight.numpy(), rtol=2e-6, atol=1e-12)
        ort_levels, *_ = _dequantize_feeding(recalibrated, node, 1)
        assert np.abs(ort_levels).max() == 127  # ORT's own grid: a different one


def test_activations_use_the_model_scale_and_zero_point(setup):
    model, *_, own, _ = setup
    for name in LAYERS:
        quantizer = model.get_submodule(name).input_quantizer
        node = f"/{name}/Conv" if name in BATCHNORM_OF else f"/{name}/Gemm"
        _, scale, zero_point = _dequantize_feeding(own, node, 0)  # through MaxPool / Flatten too
        assert scale.dtype == np.float32 and zero_point.dtype == np.uint8
        assert float(scale) == float(quantizer.scale)
        assert int(zero_point) == int(quantizer.zero_point)


def test_ort_int8_follows_the_fake_quantized_model(setup):
    model, _, _, inputs, own, recalibrated = setup
    reference = model(inputs).detach()
    errors = {}
    for label, path in (("own", own), ("recalibrated", recalibrated)):
        errors[label] = (load_onnx(path, threads=1)[0](inputs) - reference).abs() / _output_step(path)
    # in output levels: what is left is ORT's quantization of tensors the torch model keeps float
    # (the last conv's output, the logits); measured 0.36 on every CPU
    assert errors["own"].mean() < 0.5
    assert (errors["own"] > 2).float().mean() < 0.01
    # recalibrated: 0.70 with VNNI, 0.93 without (saturation)
    assert errors["own"].mean() < 0.75 * errors["recalibrated"].mean()


def test_a_model_without_quantizers_exports_as_before(setup, tmp_path):
    """The same graph as ORT's quantize_static called the way the export always called it."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    _, info, calibration, *_ = setup
    torch.manual_seed(1)
    model = build_model(SPEC).eval()
    exported = onnx.load(str(export_int8_onnx(model, info, tmp_path / "a.onnx", calibration, keep_float=["conv1"])))
    export_onnx(model, info, tmp_path / "f.onnx")
    quant_pre_process(str(tmp_path / "f.onnx"), str(tmp_path / "p.onnx"))

    class Reader:
        def __init__(self):
            self.batches = iter(calibration)

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {"input": batch.numpy()}

    quantize_static(str(tmp_path / "p.onnx"), str(tmp_path / "q.onnx"), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True, weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                    calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=["/conv1/Conv"],
                    extra_options={"WeightSymmetric": True})
    assert exported.graph == onnx.load(str(tmp_path / "q.onnx")).graph
    record = load_onnx(tmp_path / "a.onnx")[1].history[-1]
    assert set(record) == {"stage", "format", "calibration", "calibration_images", "float_modules"}
    assert model_overrides(onnx.load(str(tmp_path / "p.onnx")), model).tensors == {}


class _Mixed(nn.Module):
    """conv/bn/ReLU6 -> grouped conv/ReLU -> a Linear over the 64 positions (exported as MatMul)
    -> a Linear classifier (Gemm)."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1, self.act1 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU6()
        self.conv2, self.act2 = nn.Conv2d(8, 8, 3, padding=1, groups=2), nn.ReLU()
        self.token = nn.Linear(8, 6)
        self.head = nn.Linear(6 * 64, 4)

    def forward(self, x):
        x = self.act2(self.conv2(self.act1(self.bn1(self.conv1(x)))))
        return self.head(self.token(x.flatten(2).transpose(1, 2)).flatten(1))


def _mixed_model(symmetric_activations: bool):
    torch.manual_seed(2)
    model = _Mixed()
    _randomise_batchnorm(model)
    model.eval()
    layers = ["conv1", "conv2", "token", "head"]
    quantize_(model, QuantConfig(bits=4, symmetric=False, per_channel=False, exclude_first_last=False))
    attach_activation_quantizers(model, layers, 8, symmetric=symmetric_activations)
    calibration = [torch.randn(32, 3, 8, 8, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    calibrate_activations(model, calibration)
    info = ModelInfo(make_spec("digits-cnn"), InputSpec((3, 8, 8), (0.0,) * 3, (1.0,) * 3))
    return model, info, calibration


@pytest.mark.parametrize("symmetric_activations", [False, True])
def test_relu6_matmul_asymmetric_weights_and_signed_activations(symmetric_activations, tmp_path):
    model, info, calibration = _mixed_model(symmetric_activations)
    inputs = torch.randn(64, 3, 8, 8, generator=torch.Generator().manual_seed(9))
    reference = model(inputs).detach()
    errors = {}
    for use in (True, False):
        path = export_int8_onnx(model, info, tmp_path / f"{use}.onnx", calibration, use_model_quantizers=use)
        errors[use] = float((load_onnx(path, threads=1)[0](inputs) - reference).abs().mean())
        errors[use] /= _output_step(path)  # in output levels
    used = load_onnx(tmp_path / "True.onnx")[1].history[-1]["model_quantizers"]
    assert used["weights"] == ["conv1", "conv2", "token", "head"]
    assert used["activations"] == ["conv1.input_quantizer", "conv2.input_quantizer", "token.input_quantizer",
                                   "head.input_quantizer"]
    # ReLU6's fixed [0, 6] grid and conv2's input grid quantize the same ONNX tensor: conv2's wins
    assert list(used["left_to_calibration"]) == ["act1.output_quantizer"]
    # own: 0.80 / 0.98 output levels on every CPU (the float MatMul output and logits that ORT
    # quantizes); recalibrated: about the same with VNNI (weights re-quantized finely), ~5 without
    assert errors[True] < 1.5
    assert errors[True] < 1.3 * errors[False]
    kept = {n.op_type for n in onnx.load(str(tmp_path / "True.onnx")).graph.node}
    assert ({"Relu", "Clip"} <= kept) == symmetric_activations  # int8 activations keep Relu/Clip
    levels, scale, zero_point = _dequantize_feeding(tmp_path / "True.onnx", "/token/MatMul", 1)
    token = model.token.weight.detach().double().numpy()  # (6, 8); ONNX holds (8, 6), channels on axis 1
    np.testing.assert_allclose(levels * scale.astype(np.float64), token.T, rtol=2e-6, atol=1e-12)
    assert np.abs(levels).max() <= 15  # 4-bit asymmetric levels q - zero_point


def test_what_int8_cannot_hold_is_left_to_calibration(tmp_path):
    torch.manual_seed(3)
    model = _Mixed().eval()
    quantize_(model, QuantConfig(bits=4, symmetric=True, exclude=("token", "head"), exclude_first_last=False))
    parametrize.register_parametrization(model.token, "weight", LinearQuantizer(16), unsafe=True)
    parametrize.register_parametrization(model.head, "weight", KMeansQuantizer.fit(model.head.weight, 3),
                                         unsafe=True)
    attach_activation_quantizers(model, ["conv1"], 8)
    attach_activation_quantizers(model, ["conv2"], 4, relu6_outputs=False)
    calibration = [torch.randn(16, 3, 8, 8)]
    calibrate_activations(model, calibration)
    attach_activation_quantizers(model, ["head"], 8)  # attached after calibration: not frozen
    info = ModelInfo(make_spec("digits-cnn"), InputSpec((3, 8, 8), (0.0,) * 3, (1.0,) * 3))
    path = export_int8_onnx(model, info, tmp_path / "q.onnx", calibration)
    used = load_onnx(path)[1].history[-1]["model_quantizers"]
    assert used["weights"] == ["conv1", "conv2"]
    # conv2's 4-bit input quantizer is left out, so ReLU6's [0, 6] grid quantizes that tensor
    assert used["activations"] == ["conv1.input_quantizer", "act1.output_quantizer"]
    skipped = used["left_to_calibration"]
    assert set(skipped) == {"token", "head", "conv2.input_quantizer", "head.input_quantizer"}
    assert "16-bit" in skipped["token"] and "KMeans" in skipped["head"]
    assert "4-bit" in skipped["conv2.input_quantizer"] and "not frozen" in skipped["head.input_quantizer"]
    assert load_onnx(path)[0](torch.randn(2, 3, 8, 8)).shape == (2, 4)


def test_asymmetric_weights_fit_int8_up_to_7_bits():
    weights = torch.linspace(-1, 0.3, 64).view(4, 16)
    for bits, fits in ((8, False), (7, True), (3, True)):
        layer = nn.Linear(16, 4)
        parametrize.register_parametrization(layer, "weight", LinearQuantizer(bits, symmetric=False), unsafe=True)
        with torch.no_grad():
            layer.parametrizations.weight.original.copy_(weights)
        found = int8_weight_levels(layer)
        if not fits:  # the levels q - zero_point span 255 steps: one side passes 127
            assert isinstance(found, str) and "exceed" in found
            continue
        levels, scale = found
        assert torch.equal(scale.view(-1, 1) * levels, layer.weight)  # bit for bit
        assert levels.abs().max() <= 2 ** bits - 1 and len(levels.unique()) <= 2 ** bits


def test_layers_nested_in_containers_are_found(tmp_path):
    """ResNet blocks sit in nn.Sequential stages (ONNX names them /layer1/layer1.0/conv1/Conv); a
    block input feeds both conv1 and the 1x1 shortcut conv, whose input quantizers agree."""
    spec = make_spec("resnet20", num_classes=4, image_size=8, width=4, shortcut="B")
    torch.manual_seed(4)
    model = build_model(spec)
    _randomise_batchnorm(model)
    model.eval()
    quantize_(model, QuantConfig(bits=4, symmetric=True, per_channel=True, activation_bits=8,
                                 exclude_first_last=False))
    calibration = [torch.randn(32, 3, 8, 8, generator=torch.Generator().manual_seed(5))]
    calibrate_activations(model, calibration)
    info = ModelInfo(spec, InputSpec((3, 8, 8), (0.0,) * 3, (1.0,) * 3))
    path = export_int8_onnx(model, info, tmp_path / "r.onnx", calibration, keep_float=["layer1.0.conv1"])
    used = load_onnx(path)[1].history[-1]["model_quantizers"]
    layers = [name for name, m in model.named_modules() if hasattr(m, "input_quantizer")]
    assert len(layers) == 22 and "layer2.0.shortcut.0" in layers  # 19 convs, 2 shortcuts, linear
    pinned = [name for name in layers if name != "layer1.0.conv1"]
    assert used["weights"] == pinned and used["left_to_calibration"] == {}
    assert sorted(used["activations"]) == sorted(f"{name}.input_quantizer" for name in pinned)
    graph, values, producers = _graph(path)
    kept = next(n for n in graph.graph.node if n.name == "/layer1/layer1.0/conv1/Conv")
    assert kept.input[1] in values and values[kept.input[1]].dtype == np.float32  # left in float
    for name, node in (("layer2.0.conv1", "/layer2/layer2.0/conv1/Conv"),
                       ("layer2.0.shortcut.0", "/layer2/layer2.0/shortcut/shortcut.0/Conv")):
        _, scale, _ = _dequantize_feeding(path, node, 0)
        assert float(scale) == float(model.get_submodule(name).input_quantizer.scale)


def test_module_of_node_reads_both_scope_styles():
    assert module_of_node("/layer1/layer1.0/shortcut/shortcut.0/Conv") == "layer1.0.shortcut.0"
    assert module_of_node("/layer1/0/conv1/Conv") == "layer1.0.conv1"
    assert module_of_node("/features/features.0/features.0.2/Clip") == "features.0.2"
    assert module_of_node("/fc/Gemm") == "fc" and module_of_node("/Relu") == ""


def test_a_weight_that_is_no_channel_multiple_is_left_to_calibration(setup, tmp_path):
    model, info, *_ = setup
    export_onnx(remove_activation_quantizers(copy_model(model)), info, tmp_path / "f.onnx")
    graph = onnx.load(str(tmp_path / "f.onnx"))
    conv2 = next(n for n in graph.graph.node if n.name == "/conv2/Conv")
    init = next(i for i in graph.graph.initializer if i.name == conv2.input[1])
    changed = numpy_helper.to_array(init).copy()
    changed[0, 0, 0, 0] += 0.5 * np.abs(changed[0]).max()
    init.CopyFrom(numpy_helper.from_array(changed, init.name))
    found = model_overrides(graph, model)
    assert "conv2" in found.skipped and "multiple" in found.skipped["conv2"]
    assert conv2.input[1] not in found.tensors
    assert {"conv1", "conv3", "fc"} <= set(found.weights)


def test_export_command_uses_the_model_quantizers_unless_told_to_recalibrate(setup, tmp_path):
    model, info, *_ = setup
    save_model(tmp_path / "q.safetensors", model, info)
    for extra, expected in (([], True), (["--recalibrate"], False), (["--recalibrate", "--reduce-range"], False)):
        out = tmp_path / f"q{len(extra)}.onnx"
        assert main(["export", str(tmp_path / "q.safetensors"), "--format", "int8-onnx", "--out", str(out),
                     "--data", "synthetic", "--calibration-images", "64", *extra]) == 0
        record = load_onnx(out)[1].history[-1]
        assert ("model_quantizers" in record) == expected
        assert record.get("reduce_range", False) == ("--reduce-range" in extra)
        if expected:  # the default keeps the first conv and the classifier in float
            assert record["model_quantizers"]["weights"] == ["conv2", "conv3"]


def _weight_levels(path) -> dict[str, np.ndarray]:
    """The int8 weight initializers of the Conv/Gemm/MatMul nodes, by node name."""
    graph, values, producers = _graph(path)
    levels = {}
    for node in graph.graph.node:
        if node.op_type in ("Conv", "Gemm", "MatMul") and node.input[1] in producers:
            dq = producers[node.input[1]]
            if dq.op_type == "DequantizeLinear" and dq.input[0] in values:
                levels[node.name] = values[dq.input[0]]
    return levels


def test_reduce_range_holds_every_int8_weight_to_seven_bits(setup, tmp_path):
    """ORT's recalibrated weights use [-64, 64] instead of [-127, 127]; the model's 4-bit levels
    fit and are kept; outputs still follow the model (no CPU can saturate on these weights)."""
    model, info, calibration, inputs, own, recalibrated = setup
    full = _weight_levels(recalibrated)
    reduced_path = export_int8_onnx(model, info, tmp_path / "r.onnx", calibration, use_model_quantizers=False,
                                    reduce_range=True)
    reduced = _weight_levels(reduced_path)
    assert set(reduced) == set(full) and len(full) == 4
    assert max(np.abs(v).max() for v in full.values()) == 127
    assert max(np.abs(v).max() for v in reduced.values()) == 64
    kept_path = export_int8_onnx(model, info, tmp_path / "k.onnx", calibration, reduce_range=True)
    for name, levels in _weight_levels(own).items():
        np.testing.assert_array_equal(_weight_levels(kept_path)[name], levels)
    record = load_onnx(kept_path)[1].history[-1]
    assert record["reduce_range"] is True and record["model_quantizers"]["weights"] == list(LAYERS)
    errors = (load_onnx(kept_path, threads=1)[0](inputs) - model(inputs).detach()).abs() / _output_step(kept_path)
    assert errors.mean() < 0.5


def test_reduce_range_leaves_eight_bit_levels_to_ort(tmp_path):
    torch.manual_seed(4)
    model = _Mixed().eval()
    quantize_(model, QuantConfig(bits=8, symmetric=True, per_channel=True, exclude_first_last=False))
    info = ModelInfo(make_spec("digits-cnn"), InputSpec((3, 8, 8), (0.0,) * 3, (1.0,) * 3))
    calibration = [torch.randn(16, 3, 8, 8)]
    path = export_int8_onnx(model, info, tmp_path / "q.onnx", calibration, reduce_range=True)
    used = load_onnx(path)[1].history[-1]["model_quantizers"]
    assert used["weights"] == []
    assert set(used["left_to_calibration"]) == {"conv1", "conv2", "token", "head"}
    assert all("reduced range [-64, 64]" in why for why in used["left_to_calibration"].values())
    assert max(np.abs(v).max() for v in _weight_levels(path).values()) == 64
    full = load_onnx(export_int8_onnx(model, info, tmp_path / "f.onnx", calibration))[1].history[-1]
    assert full["model_quantizers"]["weights"] == ["conv1", "conv2", "token", "head"]
