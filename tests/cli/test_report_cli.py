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
