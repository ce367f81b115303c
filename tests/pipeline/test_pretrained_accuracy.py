"""The published ResNet-20 accuracy, reproduced through import-pretrained + eval (real data)."""

import json

import pytest

from deepshrink.cli import main

# ../shared/data/README.md: 9173 of 10,000 correct, measured independently.
EXPECTED_TOP1 = 0.9173


def test_import_and_eval_reproduce_published_accuracy(shared_data, tmp_path, capsys):
    checkpoint = next((shared_data / "pretrained").glob("resnet20-*.th"))
    model_file = tmp_path / "resnet20.safetensors"
    assert main(["import-pretrained", str(checkpoint), "--model", "resnet20", "--out", str(model_file)]) == 0
    capsys.readouterr()
    assert main(["eval", str(model_file), "--data", "cifar10", "--data-dir", str(shared_data), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["examples"] == 10_000
    assert result["top1"] == pytest.approx(EXPECTED_TOP1, abs=0.0005)
    assert result["params"] == 269_722
