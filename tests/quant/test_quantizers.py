"""Quantizer parametrizations: the codec's representation is bit-exact, k-means centroid
gradients are per-cluster sums, the float weight stays frozen, and models round-trip files."""

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from deepshrink.models import InputSpec, ModelInfo, build_model, load_model, make_spec, save_model
from deepshrink.quant import PRUNED, KMeansQuantizer, LinearQuantizer
from deepshrink.train.optim import build_optimizer


def _weight(shape=(6, 4, 3, 3), zeros=0.4, seed=0):
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(shape, generator=generator) * 0.1
    weight[torch.rand(shape, generator=generator) < zeros] = 0.0
    return weight


def _decode(codebook, indices):
    """codebook[g, indices] with row g serving weight[g] (G = 1: one row for all)."""
    rows = torch.arange(codebook.shape[0]).view(-1, *([1] * (indices.dim() - 1))).expand_as(indices)
    return codebook[rows if codebook.shape[0] > 1 else torch.zeros_like(indices), indices]


@pytest.mark.parametrize("bits", [2, 4, 8, 16])
@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("per_channel", [False, True])
def test_linear_representation_is_bit_exact(bits, symmetric, per_channel):
    weight = _weight()
    quantizer = LinearQuantizer(bits, symmetric, per_channel)
    codebook, indices = quantizer.quantized_representation(weight)
    levels = 2 ** bits - (1 if symmetric else 0)
    assert codebook.dtype == torch.float32 and codebook.shape == (6 if per_channel else 1, levels)
    assert indices.dtype == torch.int64 and indices.shape == weight.shape
    assert indices.min() >= 0 and indices.max() < levels
    assert torch.equal(_decode(codebook, indices), quantizer(weight))


def test_kmeans_keeps_zeros_and_uses_at_most_2_to_the_bits_values():
    weight = _weight()
    quantizer = KMeansQuantizer.fit(weight, 3, "linear")
    shared = quantizer(weight)
    assert torch.equal(quantizer.indices == PRUNED, weight == 0)
    assert torch.all(shared[weight == 0] == 0.0)
    assert torch.unique(shared[weight != 0]).numel() <= 8
    kept_values = weight[weight != 0]
    centroids = quantizer.centroids.detach()
    nearest = centroids[(kept_values[:, None] - centroids[None, :]).abs().argmin(dim=1)]
    assert torch.equal(shared[weight != 0], nearest)  # each weight at its nearest centroid
    assert torch.unique(shared[weight != 0]).numel() == 8  # and all 8 are used
    codebook, indices = quantizer.quantized_representation(weight)
    assert codebook.shape == (1, 8) and indices.min() >= 0 and indices.max() < 8
    kept = weight != 0
    assert torch.equal(_decode(codebook, indices)[kept], shared[kept])


def test_centroid_gradient_is_the_sum_over_its_cluster():
    weight = _weight(zeros=0.3).requires_grad_(True)
    quantizer = KMeansQuantizer.fit(weight, 2, "density")
    upstream = torch.randn(weight.shape)
    (quantizer(weight) * upstream).sum().backward()
    expected = torch.stack([upstream[quantizer.indices == k].sum() for k in range(4)])
    assert torch.allclose(quantizer.centroids.grad, expected, atol=1e-5)
    assert expected.abs().min() > 0  # every cluster really received gradient
    assert weight.grad is None  # the float weight is not read, so an optimiser skips it


def test_kmeans_training_moves_centroids_but_never_the_float_weight():
    layer = nn.Linear(20, 10)
    parametrize.register_parametrization(layer, "weight", KMeansQuantizer.fit(layer.weight, 3, "linear"))
    layer.parametrizations.weight.original.requires_grad_(False)
    original = layer.parametrizations.weight.original.detach().clone()
    centroids = layer.parametrizations.weight[0].centroids.detach().clone()
    optimizer = build_optimizer(layer, "sgd", lr=0.1, momentum=0.9, weight_decay=5e-4)
    for _ in range(5):
        optimizer.zero_grad()
        layer(torch.randn(8, 20)).pow(2).mean().backward()
        optimizer.step()
    assert torch.equal(layer.parametrizations.weight.original, original)
    assert not torch.equal(layer.parametrizations.weight[0].centroids, centroids)
    assert torch.unique(layer.weight).numel() <= 8


def test_linear_quantizer_gradient_reaches_the_float_weight_unchanged():
    layer = nn.Linear(6, 3)
    parametrize.register_parametrization(layer, "weight", LinearQuantizer(3))
    x = torch.randn(4, 6)
    layer(x).sum().backward()
    # d sum(W x + b) / dW = sum over the batch of x, whatever W's quantized value
    expected = x.sum(dim=0).expand(3, 6)
    assert torch.allclose(layer.parametrizations.weight.original.grad, expected)


@pytest.mark.parametrize("quantizer", ["linear", "kmeans"])
def test_quantized_model_survives_save_and_load(tmp_path, quantizer):
    spec = make_spec("digits-cnn")
    torch.manual_seed(0)
    model = build_model(spec)
    conv = model.conv2
    attached = LinearQuantizer(4, per_channel=True) if quantizer == "linear" else KMeansQuantizer.fit(conv.weight, 4)
    parametrize.register_parametrization(conv, "weight", attached, unsafe=True)
    save_model(tmp_path / "q.safetensors", model, ModelInfo(spec, InputSpec((1, 8, 8), (0.3,), (0.4,))))
    loaded, info = load_model(tmp_path / "q.safetensors")
    assert info.parametrizations[0]["kind"] == attached.kind
    assert info.parametrizations[0]["args"] == attached.spec()
    x = torch.randn(3, 1, 8, 8)
    assert torch.equal(loaded(x), model.eval()(x))
