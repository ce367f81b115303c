"""Depthwise and pointwise convolutions by their own formulas (MACs, parameters, memory accesses),
and the zoo's ImageNet-style models cross-checked against ptflops."""

import pytest
from torch import nn

from deepshrink.analysis.costs import model_costs, operand_accesses
from deepshrink.models import build_model, make_spec
from deepshrink.models.zoo.mobilenetv2 import InvertedResidual

H = W = 7
C = 12
K = 3


def only_row(layer, shape):
    report = model_costs(layer, shape)
    assert len(report.layers) == 1
    return report.layers[0]


# kind, layer (C -> C on an H x W map, bias on), MACs, parameters, memory accesses of the formulas
FORMULAS = {
    "conv": (lambda: nn.Conv2d(C, C, K, padding=1),
             H * W * K**2 * C**2, K**2 * C**2 + C, 2 * H * W * K**2 * C**2 + H * W * C),
    "depthwise": (lambda: nn.Conv2d(C, C, K, padding=1, groups=C),
                  H * W * K**2 * C, K**2 * C + C, 2 * H * W * K**2 * C + H * W * C),
    "pointwise": (lambda: nn.Conv2d(C, C, 1),
                  H * W * C**2, C**2 + C, 2 * H * W * C**2 + H * W * C),
}


@pytest.mark.parametrize("kind", sorted(FORMULAS))
def test_each_kind_by_its_own_formula(kind):
    make, macs, params, accesses = FORMULAS[kind]
    row = only_row(make(), (C, H, W))
    assert (row.kind, row.macs, row.sparse_macs, row.params) == (kind, macs, macs, params)
    assert operand_accesses(row) == accesses
    # the report's own memory columns: every element moved once (input, all parameters, output)
    assert (row.input_reads, row.weight_reads, row.output_writes) == (C * H * W, params, C * H * W)


def test_depthwise_and_pointwise_are_far_cheaper_than_a_regular_conv():
    macs = {kind: only_row(make(), (C, H, W)).macs for kind, (make, *_) in FORMULAS.items()}
    assert macs["conv"] == K**2 * macs["pointwise"] == C * macs["depthwise"]
    separable = model_costs(nn.Sequential(FORMULAS["depthwise"][0](), FORMULAS["pointwise"][0]()), (C, H, W))
    assert separable.totals["macs"] == macs["depthwise"] + macs["pointwise"]
    assert macs["conv"] / separable.totals["macs"] == pytest.approx(1 / (1 / C + 1 / K**2))


@pytest.mark.parametrize("stride, k", [(2, 3), (1, 5), (2, 1)])
def test_strided_and_larger_kernels_use_the_output_map(stride, k):
    out = (H + 2 * (k // 2) - k) // stride + 1
    depthwise = only_row(nn.Conv2d(C, C, k, stride, k // 2, groups=C, bias=False), (C, H, W))
    assert (depthwise.kind, depthwise.macs, depthwise.params) == ("depthwise", out * out * k**2 * C, k**2 * C)
    assert operand_accesses(depthwise) == 2 * out * out * k**2 * C + out * out * C
    pointwise = only_row(nn.Conv2d(C, 2 * C, 1, stride, bias=False), (C, H, W))
    assert (pointwise.kind, pointwise.macs) == ("pointwise", out * out * C * 2 * C)


def test_memory_op_accesses_are_reads_plus_writes():
    row = only_row(nn.BatchNorm2d(C).eval(), (C, H, W))
    # input and output maps, and the affine scale and shift (the running statistics are buffers)
    assert row.macs == 0 and operand_accesses(row) == 2 * C * H * W + 2 * C


def test_inverted_residual_block_rows():
    """MobileNetV2 block, 8 -> 8 channels, expansion 6, on an 8x8 map: pointwise 8->48, depthwise
    3x3 48, pointwise 48->8 (no biases), BatchNorm and ReLU6 rows without MACs."""
    block = InvertedResidual(8, 8, 1, 6)
    report = model_costs(block, (8, 8, 8))
    rows = {row.name: row for row in report.layers}
    assert [rows[n].kind for n in ("conv.0.0", "conv.1.0", "conv.2")] == ["pointwise", "depthwise", "pointwise"]
    assert rows["conv.0.0"].macs == 64 * 8 * 48 and rows["conv.0.0"].params == 8 * 48
    assert rows["conv.1.0"].macs == 64 * 9 * 48 and rows["conv.1.0"].params == 9 * 48
    assert rows["conv.2"].macs == 64 * 48 * 8
    assert {rows[n].kind for n in ("conv.0.1", "conv.0.2", "conv.3")} == {"norm", "activation"}
    assert report.totals["macs"] == 64 * (8 * 48 + 9 * 48 + 48 * 8)


def test_mobilenetv2_depthwise_layers_are_costed_as_depthwise():
    model = build_model(make_spec("mobilenetv2", stem="cifar", image_size=32, width=0.5))
    report = model_costs(model, (3, 32, 32))
    convs = {name: m for name, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    kinds = {row.name: row.kind for row in report.layers if row.name in convs}
    assert sum(kind == "depthwise" for kind in kinds.values()) == 17  # one per inverted residual block
    for name, conv in convs.items():
        expected = "depthwise" if conv.groups > 1 else "pointwise" if conv.kernel_size == (1, 1) else "conv"
        assert kinds[name] == expected, name


PTFLOPS_IGNORED = [nn.BatchNorm1d, nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.MaxPool2d, nn.AvgPool2d,
                   nn.AdaptiveAvgPool2d]


def ptflops_counts(model, shape):
    """ptflops's MACs and parameters with only conv and linear layers counted (module hooks,
    functional counting off)."""
    ptflops = pytest.importorskip("ptflops")
    return ptflops.get_model_complexity_info(
        model, shape, as_strings=False, print_per_layer_stat=False, backend="pytorch",
        ignore_modules=PTFLOPS_IGNORED, backend_specific_config={"count_functional": False})


def bias_additions(model, report):
    """ptflops counts one addition per output element of a conv or linear layer with a bias;
    bias additions are not MACs here."""
    modules = dict(model.named_modules())
    return sum(row.output_writes for row in report.layers
               if isinstance(modules.get(row.name), (nn.Conv2d, nn.Linear)) and modules[row.name].bias is not None)


# (name, options, input shape): small widths and inputs, then the defaults at 224x224
SMALL = [
    ("resnet18", {"stem": "cifar", "width": 16}, (3, 32, 32)),
    ("resnet34", {"stem": "cifar", "width": 8}, (3, 32, 32)),
    ("resnet50", {"stem": "cifar", "width": 8}, (3, 32, 32)),
    ("mobilenetv2", {"stem": "cifar", "width": 0.5}, (3, 32, 32)),
    ("shufflenetv2", {"stem": "cifar", "width": 0.5}, (3, 32, 32)),
    ("densenet", {}, (3, 32, 32)),
    ("vgg16-bn", {"width": 0.25}, (3, 32, 32)),
    ("resnet18", {}, (3, 64, 64)),  # the ImageNet stem and max-pool on a small input
    ("shufflenetv2", {}, (3, 64, 64)),
]
DEFAULT = [(name, {"num_classes": 1000}, (3, 224, 224))
           for name in ("resnet18", "resnet34", "resnet50", "mobilenetv2", "shufflenetv2")]


def check_against_ptflops(name, options, shape):
    model = build_model(make_spec(name, image_size=shape[1], **options)).eval()
    report = model_costs(model, shape)
    macs, params = ptflops_counts(model, shape)
    assert report.totals["macs"] + bias_additions(model, report) == macs
    assert report.totals["params"] == params == sum(p.numel() for p in model.parameters())
    return report


@pytest.mark.parametrize("name, options, shape", SMALL, ids=[f"{n}-{s[1]}" for n, _, s in SMALL])
def test_new_models_agree_with_ptflops(name, options, shape):
    check_against_ptflops(name, options, shape)


# published MACs at 224x224, 1000 classes: He et al. table 1 (1.8 and 3.6 G multiply-adds; ResNet-50
# is 4.09 G as torchvision's v1.5 with the stride on the 3x3 conv, 3.8 G in the paper with it on
# the first 1x1), Sandler et al. table 3 (300 M), Ma et al. table 5 (146 M for ShuffleNetV2 1x)
PUBLISHED = {"resnet18": 1.82e9, "resnet34": 3.66e9, "resnet50": 4.09e9, "mobilenetv2": 300e6, "shufflenetv2": 146e6}


@pytest.mark.parametrize("name, options, shape", DEFAULT, ids=[n for n, _, _ in DEFAULT])
def test_default_inputs_agree_with_ptflops_and_the_papers(name, options, shape):
    report = check_against_ptflops(name, options, shape)
    assert report.totals["macs"] == pytest.approx(PUBLISHED[name], rel=0.02)
