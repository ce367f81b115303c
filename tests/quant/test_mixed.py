"""Mixed precision: the knapsack against brute force, the size model by hand, sensitivities
against independent oracles, attaching per-layer bits, and the whole plan on small data."""

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from deepshrink.data.synthetic import make_synthetic
from deepshrink.errors import UserError
from deepshrink.models import InputSpec, ModelInfo, build_model, load_model, make_spec, save_model
from deepshrink.prune import attach_masks, magnitude_mask
from deepshrink.quant import QuantConfig, quantize_, quantizers_of
from deepshrink.quant.mixed import (assign_bits, float_bytes_besides, hessian_sensitivity, hessian_traces, layer_sensitivity,
                                    layer_size_options, mixed_layers, model_size_bytes,
                                    plan_mixed_precision, quantize_mixed_, weight_bytes)


# --- the knapsack ------------------------------------------------------------------------------

@st.composite
def knapsack_instances(draw):
    """Up to 4 layers with 1..4 bit options each: random integer sizes and float costs, and a
    budget around the sizes' range."""
    sensitivity, sizes = {}, {}
    for layer in range(draw(st.integers(1, 4))):
        bits = draw(st.lists(st.integers(2, 8), min_size=1, max_size=4, unique=True))
        sizes[f"l{layer}"] = {b: draw(st.integers(0, 300)) for b in bits}
        sensitivity[f"l{layer}"] = {b: draw(st.floats(-1, 5, allow_nan=False)) for b in bits}
    budget = draw(st.integers(0, 300 * len(sizes)))
    return sensitivity, sizes, budget


def brute_force(sensitivity, sizes, budget):
    """Least summed sensitivity over every assignment within the budget (None: none fits)."""
    layers = list(sizes)
    best = None
    for combo in itertools.product(*(list(sizes[n]) for n in layers)):
        if sum(sizes[n][b] for n, b in zip(layers, combo)) <= budget:
            cost = sum(sensitivity[n][b] for n, b in zip(layers, combo))
            best = cost if best is None else min(best, cost)
    return best


def _cost(sensitivity, assignment):
    return sum(sensitivity[n][b] for n, b in assignment.items())


def _size(sizes, assignment):
    return sum(sizes[n][b] for n, b in assignment.items())


@settings(max_examples=300, deadline=None)
@given(knapsack_instances())
def test_knapsack_at_granularity_one_is_the_brute_force_optimum(instance):
    sensitivity, sizes, budget = instance
    optimum = brute_force(sensitivity, sizes, budget)
    if optimum is None:
        with pytest.raises(UserError, match="below the smallest"):
            assign_bits(sensitivity, sizes, budget, granularity=1)
        return
    assignment = assign_bits(sensitivity, sizes, budget, granularity=1)
    assert list(assignment) == list(sizes)
    assert _size(sizes, assignment) <= budget
    assert _cost(sensitivity, assignment) == pytest.approx(optimum, abs=1e-9)


@settings(max_examples=200, deadline=None)
@given(knapsack_instances(), st.integers(2, 64))
def test_coarse_knapsack_fits_and_beats_the_optimum_of_a_slightly_smaller_budget(instance, granularity):
    sensitivity, sizes, budget = instance
    if brute_force(sensitivity, sizes, budget) is None:
        return
    assignment = assign_bits(sensitivity, sizes, budget, granularity=granularity)
    assert _size(sizes, assignment) <= budget
    reduced = brute_force(sensitivity, sizes, budget - len(sizes) * granularity)
    if reduced is not None:
        assert _cost(sensitivity, assignment) <= reduced + 1e-9


@settings(max_examples=200, deadline=None)
@given(knapsack_instances(), st.integers(1, 64))
def test_an_absurd_budget_gives_the_choices_of_a_budget_that_fits_everything(instance, granularity):
    sensitivity, sizes, _ = instance
    enough = sum(max(s.values()) for s in sizes.values()) + len(sizes) * granularity
    assignment = assign_bits(sensitivity, sizes, 10 ** 303, granularity=granularity)  # 1e300 KiB: no huge table
    assert assignment == assign_bits(sensitivity, sizes, enough, granularity=granularity)
    assert _cost(sensitivity, assignment) == pytest.approx(brute_force(sensitivity, sizes, enough), abs=1e-9)


def test_knapsack_trades_bits_between_layers_by_hand():
    # a: sensitive (2 bits costs 10), b: robust. Budget fits one layer at 8 bits, the other at 2.
    sensitivity = {"a": {2: 10.0, 8: 0.0}, "b": {2: 1.0, 8: 0.0}}
    sizes = {"a": {2: 25, 8: 100}, "b": {2: 25, 8: 100}}
    assert assign_bits(sensitivity, sizes, 125, granularity=1) == {"a": 8, "b": 2}
    assert assign_bits(sensitivity, sizes, 200, granularity=1) == {"a": 8, "b": 8}
    assert assign_bits(sensitivity, sizes, 50, granularity=1) == {"a": 2, "b": 2}
    with pytest.raises(UserError, match="49 bytes is below the smallest mixed-precision size, 50 bytes"):
        assign_bits(sensitivity, sizes, 49)


def test_knapsack_ties_go_to_the_smaller_size():
    assert assign_bits({"a": {4: 0.0, 8: 0.0}}, {"a": {4: 10, 8: 20}}, 100, granularity=1) == {"a": 4}


def test_knapsack_rejects_mismatched_tables():
    with pytest.raises(ValueError, match="same layers"):
        assign_bits({"a": {2: 0.0}}, {"a": {3: 1}}, 10)
    with pytest.raises(ValueError, match="same layers"):
        assign_bits({"a": {2: 0.0}}, {"b": {2: 1}}, 10)


# --- the size model ----------------------------------------------------------------------------

class ConvBnLinear(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)          # weight 4*3*3*3 = 108, bias 4
        self.bn = nn.BatchNorm2d(4)             # weight, bias, running mean, running var: 4 each
        self.fc = nn.Linear(8, 5)               # weight 40, bias 5

    def forward(self, x):
        return self.fc(self.bn(self.conv(x)).flatten(1)[:, :8])


def test_weight_bytes_packs_bits():
    assert weight_bytes(108, 3) == 41       # 324 bits -> 40.5 bytes, rounded up
    assert weight_bytes(8, 4) == 4
    assert weight_bytes(1, 2) == 1


@pytest.mark.parametrize("config,conv_bytes,fc_bytes", [
    # conv at 3 bits: indices ceil(108 * 3 / 8) = 41; fc at 2 bits: ceil(40 * 2 / 8) = 10; then
    # the parameters: 4 bytes per scale / zero-point / centroid
    (QuantConfig("linear", per_channel=True), 41 + 4 * (4 + 4), 10 + 5 * (4 + 4)),
    (QuantConfig("linear", symmetric=True, per_channel=True), 41 + 4 * 4, 10 + 5 * 4),
    (QuantConfig("linear"), 41 + 4 + 4, 10 + 4 + 4),
    (QuantConfig("linear", symmetric=True), 41 + 4, 10 + 4),
    (QuantConfig("kmeans"), 41 + 2 ** 3 * 4, 10 + 2 ** 2 * 4),
])
def test_model_size_counts_quantized_and_float_tensors_by_hand(config, conv_bytes, fc_bytes):
    model = ConvBnLinear()
    conv_bias, bn, fc_bias = 4 * 4, 4 * 4 * 4, 4 * 5  # float32; BN's batch counter not counted
    assert model_size_bytes(model, {}, config) == 4 * 108 + conv_bias + bn + 4 * 40 + fc_bias
    assert model_size_bytes(model, {"conv": 3}, config) == conv_bytes + conv_bias + bn + 4 * 40 + fc_bias
    assert model_size_bytes(model, {"conv": 3, "fc": 2}, config) == conv_bytes + conv_bias + bn + fc_bytes + fc_bias
    assert layer_size_options(model, ["conv", "fc"], [2, 3], config)["conv"][3] == conv_bytes
    assert layer_size_options(model, ["conv", "fc"], [2, 3], config)["fc"][2] == fc_bytes


def test_fixed_part_of_the_size_is_everything_but_the_chosen_weights():
    model = ConvBnLinear()
    assert float_bytes_besides(model, ["conv"]) == 4 * (4 + 16 + 40 + 5)
    assert float_bytes_besides(model, ["conv", "fc"]) == 4 * (4 + 16 + 5)
    assert float_bytes_besides(model, []) == model_size_bytes(model, {}, QuantConfig())


def test_model_size_ignores_attached_masks_and_quantizers():
    model = ConvBnLinear()
    config = QuantConfig("kmeans", 3, exclude_first_last=False)
    before = model_size_bytes(model, {"conv": 3}, config)
    attach_masks(model, {"conv": magnitude_mask(model.conv.weight, 0.5)})
    quantize_(model, config)
    assert model_size_bytes(model, {"conv": 3}, config) == before


def test_model_size_rejects_unknown_layers():
    with pytest.raises(UserError, match="bn"):
        model_size_bytes(ConvBnLinear(), {"bn": 4}, QuantConfig())


# --- sensitivity -------------------------------------------------------------------------------

def _asymmetric_per_tensor(w: np.ndarray, bits: int) -> np.ndarray:
    """Independent numpy oracle of per-tensor asymmetric linear quantization."""
    lo, hi = min(w.min(), 0.0), max(w.max(), 0.0)
    scale = (hi - lo) / (2 ** bits - 1)
    zero_point = np.clip(np.round(-lo / scale), 0, 2 ** bits - 1)
    return scale * (np.clip(np.round(w / scale) + zero_point, 0, 2 ** bits - 1) - zero_point)


def test_layer_sensitivity_is_the_score_drop_of_quantizing_that_layer_alone():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    float_weights = {name: model.get_submodule(name).weight.detach().double().numpy().copy() for name in ("0", "2")}

    def score(m):  # minus the squared distance of every weight from the float weight
        return -sum(float(((m.get_submodule(n).weight.detach().double().numpy() - w) ** 2).sum())
                    for n, w in float_weights.items())

    result = layer_sensitivity(model, ["0", "2"], [2, 3, 5], score, QuantConfig("linear"))
    for name, w in float_weights.items():
        for bits in (2, 3, 5):
            expected = float(((_asymmetric_per_tensor(w.astype(np.float32), bits) - w) ** 2).sum())
            assert result[name][bits] == pytest.approx(expected, rel=1e-4)
    assert not quantizers_of(model)
    assert np.array_equal(model[0].weight.detach().double().numpy(), float_weights["0"])


def test_layer_sensitivity_decreases_with_bits():
    torch.manual_seed(1)
    model = build_model(make_spec("digits-cnn", num_classes=4, in_channels=3, image_size=16)).eval()
    inputs = torch.randn(32, 3, 16, 16)
    with torch.no_grad():
        reference = model(inputs)

    def score(m):  # minus the mean squared logit error against the float model
        with torch.no_grad():
            return -float(F.mse_loss(m.eval()(inputs), reference))

    config = QuantConfig("linear", per_channel=True)
    result = layer_sensitivity(model, list(mixed_layers(model, config)), [2, 4, 8], score, config)
    assert list(result) == ["conv2", "conv3"]
    for by_bits in result.values():
        assert by_bits[2] > by_bits[4] > by_bits[8] > 0


def test_sensitivity_refuses_quantized_layers():
    model = quantize_(ConvBnLinear(), QuantConfig("linear", 4, exclude_first_last=False))
    with pytest.raises(UserError, match="already quantized"):
        layer_sensitivity(model, ["conv"], [2], lambda m: 0.0, QuantConfig())


def _one_hot_batch(out_features=3, in_features=4, seed=0):
    """A bias-free Linear and inputs that are scaled one-hot rows: X^T X is diagonal, so the
    Hessian of the summed-squares loss is diagonal and every Rademacher probe is exact."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(in_features, out_features, bias=False))
    scales = torch.tensor([0.5, 2.0, 1.0, 3.0, 1.5, 0.7])
    inputs = torch.zeros(len(scales), in_features)
    inputs[torch.arange(len(scales)), torch.arange(len(scales)) % in_features] = scales
    targets = torch.randn(len(scales), out_features)
    return model, inputs, targets


def _sum_of_squares(outputs, targets):  # mean over the batch of the summed squared error
    return ((outputs - targets) ** 2).sum() / len(targets)


@pytest.mark.parametrize("per_layer", [True, False])
def test_hessian_trace_is_exact_on_a_diagonal_hessian(per_layer):
    model, inputs, targets = _one_hot_batch()
    # d2/dW_ji^2 of mean_n sum_j (W x_n - t_n)_j^2 = 2/N sum_n x_ni^2, for each of 3 rows j
    expected = 3 * 2 / len(inputs) * float((inputs ** 2).sum())
    batches = [(inputs[:4], targets[:4]), (inputs[4:], targets[4:])]  # weighted by batch size
    traces = hessian_traces(model, ["0"], batches, probes=2, per_layer=per_layer, loss_fn=_sum_of_squares)
    # the two batches' Hessians average, weighted by size, to the whole batch's
    assert traces["0"] == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("per_layer", [True, False])
def test_hessian_traces_approach_the_exact_block_traces(per_layer):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3))
    inputs, targets = torch.randn(6, 3), torch.tensor([0, 1, 2, 0, 1, 2])
    w0, w2 = model[0].weight.detach().clone(), model[2].weight.detach().clone()

    def loss(a, b):  # the loss as a function of both weights, for the exact Hessian
        hidden = torch.tanh(inputs @ a.T + model[0].bias.detach())
        return F.cross_entropy(hidden @ b.T + model[2].bias.detach(), targets)

    (h00, _), (_, h22) = torch.autograd.functional.hessian(loss, (w0, w2))
    exact = {"0": float(h00.reshape(w0.numel(), -1).trace()), "2": float(h22.reshape(w2.numel(), -1).trace())}
    estimate = hessian_traces(model, ["0", "2"], [(inputs, targets)], probes=3000, per_layer=per_layer)
    for name in exact:
        assert estimate[name] == pytest.approx(exact[name], rel=0.1)
    assert model[0].weight.requires_grad


def test_hessian_sensitivity_is_trace_over_n_times_quantization_error():
    model, inputs, targets = _one_hot_batch()
    trace = 3 * 2 / len(inputs) * float((inputs ** 2).sum())
    w = model[0].weight.detach().numpy()
    result = hessian_sensitivity(model, ["0"], [2, 4], QuantConfig("linear"), [(inputs, targets)],
                                 loss_fn=_sum_of_squares)
    for bits in (2, 4):
        error = float(((_asymmetric_per_tensor(w, bits) - w) ** 2).sum())
        assert result["0"][bits] == pytest.approx(trace / w.size * error, rel=1e-4)
    assert model[0].weight.requires_grad and not quantizers_of(model)


# --- attaching, saving -------------------------------------------------------------------------

def _digits_model(seed=0):
    torch.manual_seed(seed)
    spec = make_spec("digits-cnn", num_classes=4, in_channels=3, image_size=16)
    return build_model(spec).eval(), ModelInfo(spec, InputSpec((3, 16, 16), (0.5,) * 3, (0.25,) * 3))


@pytest.mark.parametrize("config", [QuantConfig("linear", per_channel=True), QuantConfig("kmeans")])
def test_quantize_mixed_attaches_the_bits_asked_for(config):
    model, _ = _digits_model()
    assignment = {"conv1": 8, "conv2": 2, "conv3": 5}
    quantize_mixed_(model, assignment, config)
    quantizers = quantizers_of(model)
    assert {name: q.bits for name, q in quantizers.items()} == assignment
    for name, bits in assignment.items():
        weight = model.get_submodule(name).weight
        original = model.get_submodule(name).parametrizations.weight.original
        assert not torch.equal(weight, original)  # really quantized, even at 8 bits
        assert original.requires_grad == (config.method == "linear")  # k-means freezes the float weight
        assert len(torch.unique(weight[0])) <= 2 ** bits   # per channel (linear) or per tensor
        if config.method == "kmeans":
            assert quantizers[name].centroids.numel() == 2 ** bits
            assert len(torch.unique(weight)) <= 2 ** bits


def test_quantize_mixed_refuses_non_layers_and_quantized_layers():
    model, _ = _digits_model()
    with pytest.raises(UserError, match="bn1"):
        quantize_mixed_(model, {"bn1": 4}, QuantConfig())
    with pytest.raises(UserError, match="2..8"):
        quantize_mixed_(model, {"conv2": 9}, QuantConfig())
    quantize_mixed_(model, {"conv2": 4}, QuantConfig())
    with pytest.raises(UserError, match="already quantized"):
        quantize_mixed_(model, {"conv2": 3}, QuantConfig())


@pytest.mark.parametrize("method", ["linear", "kmeans"])
def test_mixed_model_survives_a_save_load_round_trip(tmp_path, method):
    model, info = _digits_model()
    assignment = {"conv2": 3, "conv3": 6}
    quantize_mixed_(model, assignment, QuantConfig(method))
    info.history.append({"stage": "quantize", "assignment": assignment})
    save_model(tmp_path / "m.safetensors", model, info)
    loaded, loaded_info = load_model(tmp_path / "m.safetensors")
    assert {name: q.bits for name, q in quantizers_of(loaded).items()} == assignment
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert loaded_info.history[-1]["assignment"] == assignment


# --- the plan ----------------------------------------------------------------------------------

def test_plan_fits_the_budget_and_beats_uniform_bits():
    model, info = _digits_model()
    calibration = make_synthetic("train", num_images=64)
    config = QuantConfig("linear", per_channel=True, exclude_first_last=False)
    layers = list(mixed_layers(model, config))
    uniform = {name: 4 for name in layers}
    budget = model_size_bytes(model, uniform, config)
    assignment, record = plan_mixed_precision(model, info, config, budget, calibration,
                                              bits_options=(2, 4, 8), device="cpu", granularity=1)
    assert list(assignment) == layers
    assert record["size_bytes"] == model_size_bytes(model, assignment, config) <= budget
    assert record["budget_bytes"] == budget and record["assignment"] == assignment
    assert record["float_size_bytes"] == model_size_bytes(model, {}, config)
    assert not quantizers_of(model)

    from deepshrink.data import BatchLoader
    from deepshrink.train import evaluate

    def minus_loss(m):
        return -evaluate(m, BatchLoader(calibration, 64, mean=info.input.mean, std=info.input.std)).loss

    sensitivity = layer_sensitivity(model, layers, (2, 4, 8), minus_loss, config)
    assert _cost(sensitivity, assignment) <= _cost(sensitivity, uniform) + 1e-9


def test_plan_with_the_hessian_criterion_fits_the_budget():
    model, info = _digits_model()
    config = QuantConfig("linear", per_channel=True)
    budget = model_size_bytes(model, {"conv2": 3, "conv3": 3}, config)
    calibration = make_synthetic("train", num_images=32)
    assignment, record = plan_mixed_precision(model, info, config, budget, calibration,
                                              criterion="hessian", device="cpu", probes=2)
    assert set(assignment) == {"conv2", "conv3"} and record["size_bytes"] <= budget
    assert record["criterion"] == "hessian"
    assert record["size_bytes"] == model_size_bytes(model, assignment, config) and not quantizers_of(model)

    # the assignment is the knapsack's answer for the Hessian sensitivities; every size here is a
    # multiple of the default granularity (64 bytes), so it is the exact optimum
    from deepshrink.data import BatchLoader
    from deepshrink.quant.mixed import DEFAULT_BITS

    layers = ["conv2", "conv3"]
    batches = BatchLoader(calibration, 500, mean=info.input.mean, std=info.input.std)
    sensitivity = hessian_sensitivity(model, layers, DEFAULT_BITS, config, batches, probes=2)
    sizes = layer_size_options(model, layers, DEFAULT_BITS, config)
    spare = budget - float_bytes_besides(model, layers)
    assert spare % 64 == 0 and all(size % 64 == 0 for by_bits in sizes.values() for size in by_bits.values())
    assert _cost(sensitivity, assignment) == pytest.approx(brute_force(sensitivity, sizes, spare), rel=1e-9)


def test_plan_user_errors():
    model, info = _digits_model()
    calibration = make_synthetic("train", num_images=16)
    config = QuantConfig("linear")
    smallest = model_size_bytes(model, {"conv2": 2, "conv3": 2}, config)
    with pytest.raises(UserError, match="below the smallest"):
        plan_mixed_precision(model, info, config, smallest - 1, calibration, device="cpu")
    assignment, _ = plan_mixed_precision(model, info, config, smallest, calibration, device="cpu")
    assert assignment == {"conv2": 2, "conv3": 2}
    with pytest.raises(UserError, match="criterion"):
        plan_mixed_precision(model, info, config, 10 ** 6, calibration, criterion="magic")
    with pytest.raises(UserError, match="2..8"):
        plan_mixed_precision(model, info, QuantConfig("kmeans"), 10 ** 6, calibration, bits_options=(16,))
