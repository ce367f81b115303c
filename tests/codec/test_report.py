import json
import math

import pytest
from safetensors.torch import save

from deepshrink.codec import codec_report, encode_model, float32_size, format_codec_report, to_bytes
from deepshrink.codec.report import LEGEND
from deepshrink.models import build_model


def test_sizes_add_up_to_the_file(compressed_shared):
    model, info = compressed_shared
    encoded = encode_model(model, info)
    report = codec_report(encoded)
    data = to_bytes(encoded)
    assert report.dsz_bytes == len(data)
    assert report.dsz_bytes == sum(r.bytes for r in report.layers) + report.other_bytes + report.container_bytes
    # the container is exactly the safetensors header (length prefix + JSON), the deflated layer
    # table and the deflated history: every other tensor byte is counted in a layer row or in the
    # other tensors
    table = json.loads(json.loads(data[8:8 + int.from_bytes(data[:8], "little")])["__metadata__"]["deepshrink-dsz"])
    assert (report.container_bytes
            == 8 + int.from_bytes(data[:8], "little") + table["layers"]["bytes"] + table["history"]["bytes"])
    assert 0 < report.container_bytes < 2000
    # the baseline: the plain float32 file of the effective weights (parametrized ones included)
    state = {}
    for key in build_model(info.arch).state_dict():
        module_name, _, attr = key.rpartition(".")
        state[key] = getattr(model.get_submodule(module_name), attr).detach().contiguous()
    assert report.float32_bytes == float32_size(info.arch) == len(save(state))
    assert report.ratio == report.float32_bytes / report.dsz_bytes > 5  # 80%/50%/70% pruned, 16- and 8-level codebooks
    # BatchNorm: 3 layers x (weight, bias, mean, var) floats + 3 int64 counters; fc bias 10
    bn = 4 * (16 + 32 + 64)
    assert report.other_values == bn + 3 + 10
    assert report.other_bytes == 4 * (bn + 10) + 8 * 3
    affine = codec_report(encode_model(model, info, bn_affine=True))  # weight and bias only
    assert affine.other_values == bn // 2 + 10 and affine.other_bytes == 4 * (bn // 2 + 10)
    assert affine.dsz_bytes == affine.container_bytes + affine.other_bytes + sum(r.bytes for r in affine.layers)
    assert "other (BN affine, biases)" in format_codec_report(affine)
    assert "other tensors (BN, biases)" in format_codec_report(report)


def test_layer_rows(compressed_shared):
    model, info = compressed_shared
    rows = {r.key: r for r in codec_report(encode_model(model, info)).layers}
    conv2 = rows["conv2.weight"]
    assert conv2.weights == 32 * 16 * 9 and conv2.layout == "sparse"
    assert conv2.nonzeros == int((model.conv2.weight != 0).sum())
    assert conv2.weight_bits == math.ceil(math.log2(17))  # 16 levels + the zero column
    assert conv2.values.entropy <= conv2.values.bits_per_symbol <= conv2.values.entropy + 1
    assert conv2.index.entropy <= conv2.index.bits_per_symbol <= conv2.index.entropy + 1
    assert conv2.index_bits > 0 and conv2.values.symbols == conv2.index.symbols >= conv2.nonzeros
    assert rows["conv1.weight"].values is None and rows["conv1.weight"].weight_bits == 32
    assert rows["conv1.weight"].bytes == 4 * 16 * 9
    conv3, fc = rows["conv3.weight"], rows["fc.weight"]
    assert conv3.weight_bits == math.ceil(math.log2(8 + 1)) and conv3.nonzeros == int((model.conv3.weight != 0).sum())
    assert fc.values is None and fc.index is not None and fc.weight_bits == 32 and fc.layout == "sparse"
    assert fc.nonzeros == int((model.fc.weight != 0).sum()) < fc.weights == 640


def test_formatted_table(compressed_shared):
    report = codec_report(encode_model(*compressed_shared))
    text = format_codec_report(report)
    assert "conv2.weight" in text and "other tensors" in text and "container" in text
    lines = text.splitlines()
    assert lines[-len(LEGEND) - 1].startswith("float32 safetensors") and "x smaller" in text
    assert lines[-len(LEGEND):] == LEGEND  # the columns explained under the table
    assert (f"{report.float32_bytes:,} bytes -> .dsz {report.dsz_bytes:,} bytes: {report.ratio:.2f}x smaller"
            in lines[-len(LEGEND) - 1])
    conv2 = next(line for line in text.splitlines() if line.startswith("conv2.weight"))
    row = next(r for r in report.layers if r.key == "conv2.weight")
    assert conv2.split()[-1] == f"{row.bytes:,}" and f"{row.values.bits_per_symbol:.2f}/{row.values.entropy:.2f}" in conv2


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_float16_halves_the_other_bytes(compressed_shared, dtype):
    report = codec_report(encode_model(*compressed_shared, float_dtype=dtype))
    bn = 4 * (16 + 32 + 64)
    assert report.other_bytes == (2 if dtype == "float16" else 4) * (bn + 10) + 8 * 3
