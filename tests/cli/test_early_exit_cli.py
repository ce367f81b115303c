"""``train --early-exits`` and ``early-exit-sweep`` on synthetic data with a tiny model."""

import json

import pytest
import torch

from deepshrink.analysis.costs import model_costs
from deepshrink.analysis.early_exit import exit_macs, threshold_sweep
from deepshrink.cli import main
from deepshrink.data import BatchLoader, load_dataset
from deepshrink.models import ArchSpec, build_model, load_model, make_spec
from deepshrink.models.early_exit import EarlyExitModel, add_exits, exit_score

BACKBONE = make_spec("digits-cnn", num_classes=4, in_channels=3, image_size=16)
TRAIN = ["--data", "synthetic", "--batch-size", "32", "--lr", "0.05", "--limit-train", "64", "--threads", "1"]


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("exits")
    for name, extra in [("plain", []),
                        ("joint", ["--early-exits", "bn1", "pool", "--exit-weights", "0.5", "1"])]:
        assert main(["train", "--model", "digits-cnn", "--epochs", "1", "--out", str(root / name), *TRAIN, *extra]) == 0
    return root


def test_train_writes_an_early_exit_model_file(runs, capsys):
    model, info = load_model(runs / "joint" / "model.safetensors")
    assert isinstance(model, EarlyExitModel) and model.exit_points == ["bn1", "pool"]
    assert info.arch.kwargs["backbone"]["name"] == "digits-cnn" and info.history[-1]["stage"] == "train"
    assert not isinstance(load_model(runs / "plain" / "model.safetensors")[0], EarlyExitModel)


def test_heads_on_a_trained_model_start_from_its_weights_and_are_trained(runs, tmp_path, capsys):
    plain, _ = load_model(runs / "plain" / "model.safetensors")
    argv = ["train", "--init", runs / "plain" / "model.safetensors", "--early-exits", "pool", *TRAIN]
    out = _run(capsys, *argv, "--epochs", "0", "--out", tmp_path / "zero")
    assert "early exits at pool" in out
    untrained, _ = load_model(tmp_path / "zero" / "model.safetensors")
    for key, tensor in plain.state_dict().items():  # no epochs: the backbone is the model file's
        assert torch.equal(untrained.backbone.state_dict()[key], tensor)
    torch.manual_seed(0)  # what train_job does with --seed 0: load, then fresh heads
    expected, _ = add_exits(load_model(runs / "plain" / "model.safetensors")[0], BACKBONE, ["pool"])
    assert torch.equal(untrained.exits[0][2].weight, expected.exits[0][2].weight)
    _run(capsys, *argv, "--epochs", "1", "--out", tmp_path / "one")
    trained, _ = load_model(tmp_path / "one" / "model.safetensors")
    assert not torch.equal(trained.exits[0][2].weight, untrained.exits[0][2].weight)  # same start, then trained


def _first_exit_confidences(model, batches):
    """The max softmax probability of the first exit for every input, sorted."""
    scores = []
    with torch.no_grad():
        for inputs, _ in batches:
            model(inputs)
            scores.append(exit_score(model.exit_logits[0], "confidence"))
    return torch.cat(scores).sort().values


def test_sweep_json_agrees_with_the_library(runs, capsys):
    path = runs / "joint" / "model.safetensors"
    model, info = load_model(path)
    test = load_dataset("synthetic", "test")
    batches = BatchLoader(test, 64, mean=info.input.mean, std=info.input.std)
    first = _first_exit_confidences(model, batches)
    # thresholds between two inputs' confidences at the first exit, so that a real mix leaves there
    middle = [float((first[k] + first[k + 1]) / 2) for k in (len(first) // 4, len(first) // 2, 3 * len(first) // 4)]
    thresholds = [0.0, *middle, 1.0]
    result = json.loads(_run(capsys, "early-exit-sweep", path, "--data", "synthetic", "--thresholds", *thresholds,
                             "--batch-size", "50", "--json", "--threads", "1"))
    expected = threshold_sweep(model, batches, thresholds)
    assert all(0 < p.exit_fractions[0] < 1 for p in expected[1:4])
    assert [p["threshold"] for p in result["points"]] == thresholds and result["examples"] == len(test)
    for got, want in zip(result["points"], expected, strict=True):
        assert got["accuracy"] == pytest.approx(want.accuracy)
        assert got["avg_macs"] == pytest.approx(want.avg_macs)
        assert got["exit_fractions"] == pytest.approx(want.exit_fractions)
    assert result["points"][0]["exit_fractions"] == [1.0, 0.0, 0.0]  # threshold 0: all leave at the first exit
    assert result["exit_macs"] == exit_macs(model) and result["exits"] == ["bn1", "pool", "final"]
    plain = build_model(ArchSpec.from_dict(info.arch.kwargs["backbone"]))
    assert result["full_macs"] == model_costs(plain, (3, 16, 16)).totals["macs"]
    top1 = json.loads(_run(capsys, "eval", path, "--data", "synthetic", "--json"))["top1"]
    assert result["full_accuracy"] == pytest.approx(top1)  # the final classifier, as `eval` sees it
    for point in result["points"]:
        assert point["macs_ratio"] == pytest.approx(point["avg_macs"] / result["full_macs"])


def test_sweep_text_entropy_and_plot(runs, tmp_path, capsys):
    plot = tmp_path / "sweep.png"
    out = _run(capsys, "early-exit-sweep", runs / "joint" / "model.safetensors", "--data", "synthetic",
               "--rule", "entropy", "--plot", plot, "--limit", "40", "--threads", "1")
    lines = out.splitlines()
    assert "entropy <= threshold" in lines[0] and "(40 images)" in lines[0]
    assert lines[2].split() == ["threshold", "top-1", "MACs/image", "vs", "full", "@bn1", "@pool", "@final"]
    assert len(lines) == 4 + 7 + 2  # title, reference, header, rule, the 7 default thresholds, footer, plot line
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
