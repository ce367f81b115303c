import json

import pytest
import torch

from deepshrink.cli import main
from deepshrink.data import load_dataset
from deepshrink.models import build_model, save_model
from deepshrink.pipeline.train import new_model_info


@pytest.fixture
def pruned_file(tmp_path):
    torch.manual_seed(0)
    info = new_model_info("digits-cnn", load_dataset("digits", "test"))
    dense = save_model(tmp_path / "dense.safetensors", build_model(info.arch), info)
    out = tmp_path / "p.safetensors"
    assert main(["prune", str(dense), "--sparsity", "0.5", "--out", str(out)]) == 0
    return str(out)


def test_report_json_counts(pruned_file, capsys):
    capsys.readouterr()
    assert main(["report", pruned_file, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    layers = {row["name"]: row for row in report["layers"]}
    assert report["model"] == "digits-cnn" and report["stages"] == ["prune"]
    assert layers["conv2"] == {"name": "conv2", "type": "Conv2d", "params": 4608, "nonzero": 2304, "sparsity": 0.5,
                               "bits": 32.0, "bytes": 4 * 4608}
    assert layers["conv1"]["sparsity"] == 0.0 and layers["bn1"]["type"] == "BatchNorm2d"
    total = report["total"]
    assert total["params"] == sum(r["params"] for r in report["layers"]) == 24058
    assert total["nonzero"] == sum(r["nonzero"] for r in report["layers"])
    assert total["sparsity"] == pytest.approx(1 - total["nonzero"] / total["params"])


def test_report_table(pruned_file, capsys):
    capsys.readouterr()
    assert main(["report", pruned_file]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("digits-cnn (digits), stages: prune")
    assert lines[1].split() == ["layer", "type", "params", "non-zero", "sparsity", "bits", "bytes"]
    conv2 = next(line for line in lines if line.startswith("conv2 "))
    assert conv2.split() == ["conv2", "Conv2d", "4,608", "2,304", "50.00%", "32", "18,432"]
    assert any(line.split()[0] == "total" for line in lines)


def test_report_of_missing_file(tmp_path, capsys):
    assert main(["report", str(tmp_path / "x.safetensors")]) == 2
    assert "model file not found" in capsys.readouterr().err


def test_report_shows_quantized_bits_costs_and_dsz(pruned_file, tmp_path, capsys):
    quantized, dsz = tmp_path / "q.safetensors", tmp_path / "q.dsz"
    assert main(["quantize", pruned_file, "--method", "kmeans", "--bits", "4", "--out", str(quantized)]) == 0
    assert main(["encode", str(quantized), "--out", str(dsz)]) == 0
    capsys.readouterr()
    assert main(["report", str(quantized), "--costs", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    conv2 = next(row for row in report["layers"] if row["name"] == "conv2")
    assert conv2["bits"] == pytest.approx(4 + 16 * 32 / 4608)  # 4-bit indices + a 16-entry float codebook
    assert report["costs"]["macs"] > 0 and report["costs"]["layers"]
    assert main(["report", str(dsz), "--json"]) == 0
    encoded = json.loads(capsys.readouterr().out)
    assert encoded["kind"] == "dsz" and encoded["dsz_bytes"] == dsz.stat().st_size
    assert encoded["ratio"] == pytest.approx(encoded["float32_bytes"] / dsz.stat().st_size)
    assert main(["report", str(dsz)]) == 0
    assert "x smaller" in capsys.readouterr().out


def test_report_filters_names_a_filter_per_first_layer_kernel(pruned_file, capsys):
    capsys.readouterr()
    assert main(["report", pruned_file, "--filters", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["filters"]) == 16  # digits-cnn's first conv has 16 kernels
    assert all(-1 <= m["similarity"] <= 1 and m["filter"] in m["scores"] for m in report["filters"])
    assert main(["report", pruned_file, "--filters"]) == 0
    assert "closest image filter" in capsys.readouterr().out


def test_report_dsz_costs_decodes_the_model_and_explains_the_columns(pruned_file, tmp_path, capsys):
    quantized, dsz = tmp_path / "q.safetensors", tmp_path / "q.dsz"
    assert main(["quantize", pruned_file, "--method", "kmeans", "--bits", "4", "--out", str(quantized)]) == 0
    assert main(["encode", str(quantized), "--out", str(dsz)]) == 0
    capsys.readouterr()
    assert main(["report", str(quantized), "--costs", "--json"]) == 0
    from_model = json.loads(capsys.readouterr().out)["costs"]
    assert main(["report", str(dsz), "--costs", "--json"]) == 0
    encoded = json.loads(capsys.readouterr().out)
    assert encoded["kind"] == "dsz" and encoded["dataset"] == "digits"
    assert encoded["costs"]["macs"] == from_model["macs"] > 0
    assert encoded["costs"]["sparse_macs"] == from_model["sparse_macs"] < from_model["macs"]  # half pruned
    assert main(["report", str(dsz), "--costs"]) == 0
    text = capsys.readouterr().out
    assert "x smaller" in text and "costs of the decoded model:" in text
    assert "16 levels + zero = 17 entries, so 5" in text  # the legend of the `w b` column
    assert any(line.startswith("idx b:") for line in text.splitlines())
    assert "reads (elem)" in text and "writes (elem)" in text and "elements (not bytes)" in text
    conv2 = next(line for line in text.splitlines() if line.startswith("conv2.weight"))
    assert conv2.split()[5] == "5"  # 16 k-means levels plus the zero of the pruned weights


def _onnx_file(path, ops):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    nodes, name = [], "x"
    for i, op in enumerate(ops):
        inputs = {"QuantizeLinear": [name, "s", "z"], "DequantizeLinear": [name, "s", "z"]}.get(op, [name])
        nodes.append(helper.make_node(op, inputs, [f"t{i}"]))
        name = f"t{i}"
    inits = [helper.make_tensor("s", TensorProto.FLOAT, [], [0.1]), helper.make_tensor("z", TensorProto.UINT8, [], [0])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, 4])], initializer=inits)
    onnx.save(helper.make_model(graph, producer_name="test"), str(path))
    return path


def test_report_onnx_lists_size_operators_and_int8(tmp_path, capsys):
    plain = _onnx_file(tmp_path / "f.onnx", ["Relu", "Relu", "Sigmoid"])
    int8 = _onnx_file(tmp_path / "q.onnx", ["QuantizeLinear", "DequantizeLinear", "Relu"])
    capsys.readouterr()
    assert main(["report", str(plain), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["kind"] == "onnx" and report["bytes"] == plain.stat().st_size
    assert report["operators"] == {"Relu": 2, "Sigmoid": 1} and report["nodes"] == 3
    assert report["int8"] is False and report["int8_operators"] == []
    assert main(["report", str(int8)]) == 0
    text = capsys.readouterr().out
    assert f"{int8.stat().st_size:,} bytes on disk" in text
    assert "int8: yes (DequantizeLinear, QuantizeLinear present)" in text
    assert any(line.split() == ["QuantizeLinear", "1"] for line in text.splitlines())


def test_report_onnx_refuses_a_file_that_is_not_onnx_and_costs(tmp_path, capsys):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not a protobuf at all \xff\xff\xff")
    assert main(["report", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "is not an ONNX model" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "empty.onnx").write_bytes(b"")  # parses as an empty protobuf message
    assert main(["report", str(tmp_path / "empty.onnx")]) == 2
    assert "is not an ONNX model (no graph" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "missing.onnx")]) == 2
    assert "not found" in capsys.readouterr().err
    plain = _onnx_file(tmp_path / "f.onnx", ["Relu"])
    assert main(["report", str(plain), "--costs"]) == 2
    assert "--costs needs a model file or a .dsz file" in capsys.readouterr().err
