"""Every command's wrong inputs: exit code 2, one clear line on stderr, no output file."""

import pytest
import torch

from deepshrink.cli import main
from deepshrink.models import InputSpec, ModelInfo, build_model, make_spec, save_model
from deepshrink.models.early_exit import early_exit_spec


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    spec = make_spec("digits-cnn", num_classes=4, in_channels=3, image_size=16)
    torch.manual_seed(0)
    save_model(root / "synthetic.safetensors", build_model(spec),
               ModelInfo(spec, InputSpec((3, 16, 16), (0.5,) * 3, (0.2,) * 3), dataset="synthetic"))
    spec10 = make_spec("digits-cnn", num_classes=10, in_channels=3, image_size=16)
    save_model(root / "ten_classes.safetensors", build_model(spec10),
               ModelInfo(spec10, InputSpec((3, 16, 16), (0.5,) * 3, (0.2,) * 3)))
    exits = early_exit_spec(spec, ["bn1", "pool"])
    save_model(root / "exits.safetensors", build_model(exits),
               ModelInfo(exits, InputSpec((3, 16, 16), (0.5,) * 3, (0.2,) * 3), dataset="synthetic"))
    (root / "garbage.safetensors").write_bytes(b"\x00\x01garbage" * 10)
    (root / "text.csv").write_text("a,b\n1,x\n")
    return root


def _cases(f):
    model, out = str(f / "synthetic.safetensors"), str(f / "out" / "result")
    exits = str(f / "exits.safetensors")
    return [
        # train
        (["train", "--model", "nope", "--data", "synthetic", "--out", out], "invalid choice"),
        (["train", "--model", "digits-cnn", "--data", "synthetic", "--out", out, "--batch-size", "0"], "--batch-size must be an integer >= 1, got 0"),
        (["train", "--model", "digits-cnn", "--data", "synthetic", "--out", out, "--label-smoothing", "1"], "--label-smoothing must be in [0, 1), got 1.0"),
        (["train", "--model", "digits-cnn", "--data", "cifar10", "--data-dir", str(f / "none"), "--out", out], "cifar10"),
        (["train", "--init", str(f / "missing.safetensors"), "--data", "synthetic", "--out", out], "not found"),
        (["train", "--init", str(f / "ten_classes.safetensors"), "--data", "synthetic", "--out", out], "10 classes"),
        (["train", "--model", "digits-cnn", "--data", "synthetic", "--out", out, "--kd-alpha", "0.5"], "--teacher"),
        (["train", "--model", "digits-cnn", "--data", "synthetic", "--out", out, "--teacher", str(f / "garbage.safetensors")], "not a model file"),
        # train with early exits
        (["train", "--model", "digits-cnn", "--data", "synthetic", "--out", out, "--early-exits", "nope"], "unknown: nope"),
        (["train", "--model", "digits-cnn", "--data", "synthetic", "--out", out, "--early-exits", "pool", "bn1"], "forward order"),
        (["train", "--model", "digits-cnn", "--data", "synthetic", "--out", out, "--exit-weights", "1"], "--early-exits"),
        (["train", "--model", "digits-cnn", "--data", "synthetic", "--out", out, "--early-exits", "pool",
          "--exit-weights", "1", "2"], "2 early-exit loss weights for 1 exits"),
        (["train", "--model", "digits-cnn", "--data", "synthetic", "--out", out, "--early-exits", "pool",
          "--exit-weights", "-1"], "out of range"),
        (["train", "--init", exits, "--data", "synthetic", "--out", out, "--early-exits", "bn1"], "already has early exits"),
        # early-exit-sweep
        (["early-exit-sweep", model, "--data", "synthetic"], "has no early exits"),
        (["early-exit-sweep", exits, "--data", "synthetic", "--thresholds", "0.5", "1.5"], "out of range: 1.5"),
        (["early-exit-sweep", exits, "--data", "synthetic", "--rule", "entropy", "--thresholds", "-0.1"], "out of range: -0.1"),
        (["early-exit-sweep", exits, "--data", "synthetic", "--rule", "entropy", "--thresholds", "1.4"], "ln 4"),
        (["early-exit-sweep", exits, "--data", "synthetic", "--thresholds", "nan"], "out of range"),
        (["early-exit-sweep", exits, "--data", "synthetic", "--thresholds", "high"], "not a number"),
        (["early-exit-sweep", exits, "--data", "synthetic", "--rule", "margin"], "invalid choice"),
        (["early-exit-sweep", exits, "--data", "digits"], "expects 3x16x16"),
        (["early-exit-sweep", exits, "--data", "synthetic", "--plot", out + ".png", "--thresholds", "2"], "out of range"),
        (["prune", exits, "--structured", "--criterion", "l1", "--ratio", "0.5", "--out", out], "early exits"),
        # eval / bench / report
        (["eval", str(f / "garbage.safetensors"), "--data", "synthetic"], "not a model file"),
        (["eval", model, "--data", "digits"], "expects 3x16x16"),
        (["eval", str(f / "ten_classes.safetensors"), "--data", "synthetic"], "10 classes"),
        (["eval", model, "--data", "synthetic", "--batch-size", "-3"], "out of range"),
        (["bench", model, "--threads", "0"], "out of range"),
        (["bench", str(f / "model.onnx"), "--optimize"], "--optimize applies to model files"),
        (["bench", str(f / "garbage.safetensors")], "not a model file"),
        (["report", str(f / "missing.safetensors")], "not found"),
        # prune
        (["prune", model, "--sparsity", "1.0", "--out", out], "--sparsity must be in [0, 1), got 1.0"),
        (["prune", model, "--sparsity", "-0.1", "--out", out], "--sparsity must be in [0, 1)"),
        (["prune", model, "--criterion", "std", "--std-factor", "-1", "--out", out], "--std-factor must be a finite number >= 0"),
        (["prune", model, "--sparsity", "0.5", "--epochs", "-1", "--out", out], "out of range"),
        (["prune", model, "--sparsity", "0.5", "--epochs", "1", "--out", out], "needs --data"),
        (["prune", model, "--sparsity", "0.5", "--exclude", "no.such.layer", "--out", out], "matches no"),
        (["prune", str(f / "missing.safetensors"), "--sparsity", "0.5", "--out", out], "not found"),
        # export / import / sparse-opt
        (["export", model, "--format", "int8-onnx", "--out", out], "calibration data"),
        (["export", model, "--format", "tflite", "--out", out], "invalid choice"),
        (["export", str(f / "garbage.safetensors"), "--format", "onnx", "--out", out], "not a model file"),
        (["import-pretrained", str(f / "garbage.safetensors"), "--model", "resnet20", "--out", out], "garbage"),
        (["sparse-opt", "--data", str(f / "text.csv")], "text.csv"),
        (["sparse-opt", "--steps", "0"], "out of range"),
    ]


def test_every_bad_input_exits_2_with_one_line_and_writes_nothing(files, capsys):
    failures = []
    for argv, needle in _cases(files):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse
            code = exc.code
        err = capsys.readouterr().err.strip()
        if code != 2 or needle not in err or len(err.splitlines()) != 1 or "Traceback" in err:
            failures.append((argv, code, err))
    assert not failures, "\n".join(map(str, failures))
    assert not (files / "out").exists()
