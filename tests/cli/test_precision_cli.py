"""``--precision`` on ``deepshrink train`` and on the fine-tuning of ``prune`` (shared options)."""

import json

import pytest

from deepshrink.cli import main
from deepshrink.train import load_checkpoint

TRAIN = ["train", "--model", "lenet5", "--data", "synthetic", "--epochs", "1", "--batch-size", "32",
         "--lr", "0.05", "--limit-train", "64", "--device", "cpu"]


def _metrics(folder):
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def test_train_fp16_scales_the_loss_and_records_it(tmp_path):
    assert main([*TRAIN, "--precision", "fp16", "--out", str(tmp_path)]) == 0
    state = load_checkpoint(tmp_path / "last.ckpt")
    assert state["config"]["precision"] == "fp16"
    assert state["loss_scaler"]["scale"] == _metrics(tmp_path)[0]["loss_scale"] > 0


def test_prune_fine_tune_takes_precision(tmp_path):
    dense = tmp_path / "dense"
    assert main([*TRAIN, "--out", str(dense)]) == 0
    run_dir = tmp_path / "finetune"
    assert main(["prune", str(dense / "model.safetensors"), "--sparsity", "0.5", "--epochs", "1",
                 "--data", "synthetic", "--limit-train", "64", "--batch-size", "32", "--device", "cpu",
                 "--precision", "bf16", "--run-dir", str(run_dir), "--out", str(tmp_path / "p.safetensors")]) == 0
    state = load_checkpoint(run_dir / "last.ckpt")
    assert state["config"]["precision"] == "bf16" and "loss_scaler" not in state


def test_unknown_precision_exits_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main([*TRAIN, "--precision", "fp8", "--out", str(tmp_path)])
    assert exc.value.code == 2 and "fp8" in capsys.readouterr().err
