"""MACs, parameters, memory and sizes: the formulas on hand-sized layers, and agreement with ptflops."""

import math

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from deepshrink.analysis.costs import format_costs, model_costs
from deepshrink.models import build_model, make_spec
from deepshrink.models.zoo.vit import MultiHeadSelfAttention

H = W = 8
C = 6
K = 3


def _only_row(model, shape):
    report = model_costs(model, shape)
    assert len(report.layers) == 1
    return report.layers[0]


def test_regular_depthwise_pointwise_formulas():
    regular = _only_row(nn.Conv2d(C, C, K, padding=1), (C, H, W))
    assert (regular.kind, regular.macs, regular.params) == ("conv", H * W * K**2 * C**2, K**2 * C**2 + C)
    depthwise = _only_row(nn.Conv2d(C, C, K, padding=1, groups=C), (C, H, W))
    assert (depthwise.kind, depthwise.macs, depthwise.params) == ("depthwise", H * W * K**2 * C, K**2 * C + C)
    pointwise = _only_row(nn.Conv2d(C, C, 1), (C, H, W))
    assert (pointwise.kind, pointwise.macs, pointwise.params) == ("pointwise", H * W * C**2, C**2 + C)


def test_depthwise_separable_is_depthwise_plus_pointwise_and_grouped_and_strided():
    separable = nn.Sequential(nn.Conv2d(C, C, K, padding=1, groups=C), nn.Conv2d(C, 2 * C, 1))
    report = model_costs(separable, (C, H, W))
    assert report.totals["macs"] == H * W * (K**2 * C + C * 2 * C)
    grouped = _only_row(nn.Conv2d(C, C, K, stride=2, padding=1, groups=2, bias=False), (C, H, W))
    # output 4x4; each output channel sees C/2 input channels
    assert (grouped.kind, grouped.macs, grouped.params) == ("grouped", 4 * 4 * C * (C // 2) * K**2, C * (C // 2) * K**2)


def test_memory_accesses_in_elements_and_bytes():
    row = _only_row(nn.Conv2d(C, C, K, padding=1), (C, H, W))
    assert (row.input_reads, row.weight_reads, row.output_writes) == (C * H * W, K**2 * C**2 + C, C * H * W)
    assert (row.input_bytes, row.weight_bytes, row.output_bytes) == (4 * C * H * W, 4 * (K**2 * C**2 + C),
                                                                     4 * C * H * W)
    assert row.size_bits == 32 * (K**2 * C**2 + C)


def test_linear_on_tokens_and_attention_matmuls():
    tokens, dim, heads = 5, 8, 2
    linear = _only_row(nn.Linear(dim, 3), (tokens, dim))
    assert (linear.macs, linear.params) == (tokens * dim * 3, dim * 3 + 3)
    report = model_costs(MultiHeadSelfAttention(dim, heads), (tokens, dim))
    rows = {row.name: row for row in report.layers}
    assert rows["q_proj"].macs == tokens * dim * dim
    attention = rows["(model)"]
    # Q K^T: heads x (T x d_k)(d_k x T); softmax V: heads x (T x T)(T x d_k)
    assert attention.kind == "attention" and attention.macs == 2 * heads * tokens * tokens * (dim // heads)
    assert report.totals["macs"] == 4 * tokens * dim * dim + 2 * tokens * tokens * dim


def test_zero_mac_memory_ops_and_unowned_parameters_are_rows():
    model = build_model(make_spec("vit-tiny", num_classes=4, image_size=16, depth=1))
    report = model_costs(model, (3, 16, 16))
    kinds = {row.name: row.kind for row in report.layers}
    assert kinds["blocks.0.norm1"] == "norm" and kinds["blocks.0.mlp.act"] == "activation"
    assert kinds["(model)"] == "parameters"  # cls token and position embedding
    assert report.totals["params"] == sum(p.numel() for p in model.parameters())
    norm = next(row for row in report.layers if row.name == "blocks.0.norm1")
    assert norm.macs == 0 and norm.input_reads == norm.output_writes == 17 * 128


class HalfMask(nn.Module):
    """Zeroes the first half of the output channels (a stand-in for a pruning mask)."""

    def forward(self, weight):
        mask = torch.ones_like(weight)
        mask[: weight.shape[0] // 2] = 0
        return weight * mask


class FourLevels(nn.Module):
    """Rounds to 4 levels (2 bits) with the codec's quantized_representation protocol."""

    levels = torch.tensor([[-1.0, 0.0, 0.5, 1.0]])  # keeps pruned zeros at 0

    def forward(self, weight):
        codebook, indices = self.quantized_representation(weight)
        return codebook[0, indices]

    def quantized_representation(self, original):
        indices = (original[..., None] - self.levels[0]).abs().argmin(-1)
        return self.levels, indices


def test_sparse_macs_and_quantized_bits_read_the_effective_weight():
    conv = nn.Conv2d(C, 4, K, padding=1, bias=False)
    nn.init.uniform_(conv.weight, 0.3, 1.0)  # no level rounds to 0 unless masked
    parametrize.register_parametrization(conv, "weight", HalfMask())
    parametrize.register_parametrization(conv, "weight", FourLevels())
    row = _only_row(conv, (C, H, W))
    assert row.macs == H * W * 4 * C * K**2
    assert row.sparse_macs == row.macs // 2
    assert row.params == 4 * C * K**2
    assert row.size_bits == 4 * C * K**2 * 2 + 4 * 32  # 2-bit indices + 4 float32 codebook entries
    assert row.weight_bytes == math.ceil(row.size_bits / 8)


def test_cost_report_dict_and_table():
    model = build_model(make_spec("digits-cnn"))
    model.train()
    report = model_costs(model, (1, 8, 8))
    assert model.training  # mode restored
    data = report.to_dict()
    assert data["macs"] == sum(layer["macs"] for layer in data["layers"]) > 0
    # digits-cnn by hand: conv1 1->16 and conv2 16->32 on 8x8, max-pool, conv3 32->64 on 4x4, fc 64->10
    assert data["macs"] == 8 * 8 * 9 * (1 * 16 + 16 * 32) + 4 * 4 * 9 * 32 * 64 + 64 * 10
    assert data["sparse_macs"] == data["macs"]  # freshly initialised: no zero weights
    assert data["params"] == sum(p.numel() for p in model.parameters())
    text = format_costs(report)
    assert f"{data['macs']:,}" in text and "total" in text


@pytest.mark.parametrize("name,published_macs", [("resnet20", 40.8e6), ("resnet56", 125.5e6)])
def test_dense_counts_agree_with_ptflops(name, published_macs):
    ptflops = pytest.importorskip("ptflops")
    model = build_model(make_spec(name))
    report = model_costs(model, (3, 32, 32))
    # Apples to apples: ptflops's module hooks count Conv2d, Linear, BatchNorm and pooling. With
    # its functional counting off (F.relu, residual additions) and BatchNorm and pooling ignored,
    # it counts exactly the conv and linear MACs, plus one addition per linear output for the
    # bias, which is not a MAC here. Its parameters are all trainable tensors, as ours.
    macs, params = ptflops.get_model_complexity_info(
        model, (3, 32, 32), as_strings=False, print_per_layer_stat=False, backend="pytorch",
        ignore_modules=[nn.BatchNorm2d, nn.AdaptiveAvgPool2d], backend_specific_config={"count_functional": False})
    assert report.totals["macs"] + model.linear.out_features == macs
    assert report.totals["params"] == params
    assert report.totals["macs"] == pytest.approx(published_macs, rel=0.01)


def test_adder_layer_costs_adds_not_macs():
    from deepshrink.models.layers.adder import AdderConv2d

    layer = AdderConv2d(4, 8, 3, padding=1, bias=False)
    report = model_costs(layer, (4, 6, 6))
    row = report.layers[0]
    assert row.kind == "adder" and row.macs == 0
    assert row.adds == 2 * 6 * 6 * 8 * 4 * 9
    assert "adder adds" in format_costs(report)
