import pytest
import torch

from deepshrink.cli import main
from deepshrink.data import load_dataset
from deepshrink.models import build_model, load_model, save_model
from deepshrink.pipeline.train import new_model_info


@pytest.fixture
def model_file(tmp_path):
    torch.manual_seed(0)
    info = new_model_info("digits-cnn", load_dataset("digits", "test"))
    return str(save_model(tmp_path / "dense.safetensors", build_model(info.arch), info))


def _exit_code(argv):
    try:
        return main(argv)
    except SystemExit as exc:  # argparse errors exit directly
        return exc.code


def test_prune_without_fine_tuning(model_file, tmp_path, capsys):
    out = tmp_path / "p.safetensors"
    assert main(["prune", model_file, "--sparsity", "0.7", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "conv2" in printed and "70.00% pruned" in printed and "model written to" in printed
    model, _ = load_model(out)
    assert int((model.conv2.weight == 0).sum()) == round(0.7 * model.conv2.weight.numel())
    assert int((model.conv1.weight == 0).sum()) == 0


def test_std_criterion_with_exclude_and_evaluation(model_file, tmp_path, capsys):
    out = tmp_path / "p.safetensors"
    code = main(["prune", model_file, "--criterion", "std", "--std-factor", "0.5", "--exclude", "conv3",
                 "--data", "digits", "--limit-test", "100", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "test top-1" in printed and "conv3" not in printed
    dense = load_model(model_file)[0].conv2.weight.detach()
    pruned = load_model(out)[0].conv2.weight.detach()
    assert torch.equal(pruned == 0, dense.abs() < 0.5 * dense.std())


def test_agp_with_fine_tuning(model_file, tmp_path, capsys):
    out = tmp_path / "p.safetensors"
    code = main(["prune", model_file, "--sparsity", "0.5", "--schedule", "agp", "--epochs", "2",
                 "--data", "digits", "--limit-train", "128", "--limit-test", "64", "--batch-size", "64",
                 "--device", "cpu", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "pruned layers: 50.00% sparse (asked 50%)" in printed and "test top-1 " in printed


@pytest.mark.parametrize("extra,needle", [
    (["--sparsity", "1.0"], "--sparsity must be in [0, 1), got 1.0"),
    (["--sparsity", "-0.2"], "--sparsity must be in [0, 1), got -0.2"),
    (["--sparsity", "nan"], "--sparsity"),
    (["--sparsity", "0.5", "--epochs", "-1"], "out of range"),
    (["--sparsity", "0.5", "--std-factor", "1"], "not allowed with"),
    (["--sparsity", "0.5", "--criterion", "std"], "--std-factor"),
    (["--std-factor", "0.5"], "--std-factor"),
    (["--sparsity", "0.5", "--epochs", "1"], "needs --data"),
    (["--sparsity", "0.5", "--exclude", "fc9*"], "matches no"),
    (["--sparsity", "0.5", "--schedule", "cubic"], "invalid choice"),
    (["--sparsity", "0.5", "--max-layer-sparsity", "0"], "--max-layer-sparsity must be in (0, 1], got 0.0"),
    (["--sparsity", "0.5", "--prune-first-last", "--exclude", "x*"], "--exclude pattern 'x*' matches no"),
    (["--sparsity", "0.5", "--max-layer-sparsity", "0.8"], "global scope only"),
    (["--sparsity", "0.9", "--scope", "global", "--max-layer-sparsity", "0.8"], "cannot be reached"),
])
def test_bad_inputs_exit_2_with_one_line(model_file, tmp_path, capsys, extra, needle):
    out = tmp_path / "p.safetensors"
    assert _exit_code(["prune", model_file, *extra, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()


def test_missing_model_file(tmp_path, capsys):
    assert main(["prune", str(tmp_path / "none.safetensors"), "--sparsity", "0.5",
                 "--out", str(tmp_path / "p.safetensors")]) == 2
    assert "model file not found" in capsys.readouterr().err


def test_prune_with_teacher_distils_during_fine_tuning(tmp_path, capsys):
    from deepshrink.cli import main
    from deepshrink.models import read_info

    teacher = tmp_path / "teacher"
    assert main(["train", "--model", "digits-cnn", "--data", "synthetic", "--epochs", "1", "--batch-size", "32",
                 "--out", str(teacher)]) == 0
    out = tmp_path / "pruned.safetensors"
    assert main(["prune", str(teacher / "model.safetensors"), "--sparsity", "0.5", "--epochs", "1",
                 "--data", "synthetic", "--batch-size", "32", "--teacher", str(teacher / "model.safetensors"),
                 "--kd-temperature", "2", "--out", str(out)]) == 0
    stages = [r["stage"] for r in read_info(out).history]
    assert stages == ["train", "distill", "train", "prune"]
    capsys.readouterr()
    assert main(["prune", str(teacher / "model.safetensors"), "--sparsity", "0.5", "--teacher",
                 str(teacher / "model.safetensors"), "--out", str(tmp_path / "x")]) == 2
    assert "--epochs > 0" in capsys.readouterr().err


def test_before_after_table_and_json(model_file, tmp_path, capsys):
    import json
    import os

    out = tmp_path / "p.safetensors"
    argv = ["prune", model_file, "--sparsity", "0.6", "--data", "digits", "--limit-test", "100", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    lines = printed.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split() == ["before", "after", "change"])
    top1, macs, sparse_macs, params, size = lines[start + 1:start + 6]
    assert top1.startswith("test top-1") and params.startswith("parameters")
    assert macs.endswith("same") and sparse_macs.startswith("non-zero MACs") and "x fewer" in sparse_macs
    assert size.startswith("file bytes") and f"{os.path.getsize(model_file):,}" in size
    assert "pruned layers: " in printed and "(asked 60%)" in printed

    assert main([*argv, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    before, after, change = data["before"], data["after"], data["change"]
    assert before["bytes"] == os.path.getsize(model_file) and after["bytes"] == os.path.getsize(out)
    assert before["macs"] == after["macs"] > after["sparse_macs"] and before["params"] == after["params"]
    assert 0 <= before["top1"] <= 1 and after["top1"] == data["test_top1"]
    assert change["top1_points"] == pytest.approx(100 * (after["top1"] - before["top1"]))
    assert change["sparse_macs_times_fewer"] == pytest.approx(before["sparse_macs"] / after["sparse_macs"])
    assert data["sparsity"] == pytest.approx(0.6, abs=0.01)
