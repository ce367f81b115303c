"""The command line: happy paths in-process, and every user mistake -> exit 2, one line."""

import json
import subprocess
import sys

import pytest

from deepshrink.cli import main


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _fail(capsys, *argv):
    with pytest.raises(SystemExit) as exc:  # argparse errors exit directly
        main(list(argv))
    out, err = capsys.readouterr()
    return exc.value.code, out, err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    code = main(["train", "--model", "digits-cnn", "--data", "synthetic", "--epochs", "2",
                 "--batch-size", "32", "--lr", "0.05", "--out", str(out)])
    assert code == 0
    return out


def test_train_writes_model_and_eval_json_reports_it(trained, capsys):
    code, out, _ = _run(capsys, "eval", str(trained / "model.safetensors"), "--data", "synthetic", "--json")
    assert code == 0
    result = json.loads(out)
    assert set(result) >= {"top1", "loss", "params", "nonzero_params", "examples"}
    assert 0.0 <= result["top1"] <= 1.0 and result["examples"] == 128
    assert result["nonzero_params"] <= result["params"]


def test_bench_json(trained, capsys):
    code, out, _ = _run(capsys, "bench", str(trained / "model.safetensors"), "--batch", "4",
                        "--repeats", "3", "--warmup", "1", "--threads", "1", "--json")
    assert code == 0
    result = json.loads(out)
    assert result["latency_ms"] > 0 and result["batch"] == 4 and result["threads"] == 1
    assert result["images_per_s"] == pytest.approx(4 / (result["latency_ms"] / 1e3))


def test_bench_optimize_times_the_folded_model(trained, capsys):
    code, out, _ = _run(capsys, "bench", str(trained / "model.safetensors"), "--batch", "2", "--repeats", "2",
                        "--warmup", "0", "--threads", "1", "--optimize", "--json")
    assert code == 0 and json.loads(out)["engine"] == "torch-optimized"


def test_resume_of_finished_run_is_a_no_op(trained, capsys):
    code, out, _ = _run(capsys, "train", "--model", "digits-cnn", "--data", "synthetic", "--epochs", "2",
                        "--batch-size", "32", "--lr", "0.05", "--out", str(trained), "--resume")
    assert code == 0 and "final test top-1" in out


@pytest.mark.parametrize("argv,needle", [
    (["train", "--model", "resnet9000", "--data", "digits", "--out", "x"], "invalid choice"),
    (["train", "--model", "digits-cnn", "--data", "digits", "--out", "x", "--lr", "abc"], "not a number"),
    (["eval", "m.safetensors"], "--data"),
    (["bench", "m.safetensors", "--batch", "0"], "out of range"),
    (["frobnicate"], "invalid choice"),
])
def test_argument_mistakes_exit_2_with_one_line(capsys, argv, needle):
    code, out, err = _fail(capsys, *argv)
    assert code == 2
    assert needle in err and len(err.strip().splitlines()) == 1


def test_library_mistakes_exit_2_with_one_line(tmp_path, capsys, trained):
    cases = [
        (["eval", str(tmp_path / "missing.safetensors"), "--data", "digits"], "model file not found"),
        (["eval", str(trained / "model.safetensors"), "--data", "digits"], "expects 3x16x16 images"),
        (["eval", str(trained / "model.safetensors"), "--data", "cifar10"], "--data-dir is needed for cifar10"),
        (["eval", str(trained / "model.safetensors"), "--data", "cifar10", "--data-dir", str(tmp_path)], "cifar10"),
        (["bench", str(tmp_path / "nope")], "model file not found"),
        (["import-pretrained", str(tmp_path / "none.th"), "--model", "resnet20", "--out", str(tmp_path / "o")], "none.th"),
        (["train", "--model", "resnet20", "--model-opt", "shortcut=Z", "--data", "synthetic", "--out", str(tmp_path / "r")], "shortcut"),
        (["train", "--model", "resnet20", "--model-opt", "depth=3", "--data", "synthetic", "--out", str(tmp_path / "r")], "no option depth"),
        (["train", "--model", "digits-cnn", "--data", "synthetic", "--out", str(tmp_path / "r2"), "--resume"], "nothing to resume"),
    ]
    for argv, needle in cases:
        code, _, err = _run(capsys, *argv)
        assert code == 2, argv
        assert needle in err and len(err.strip().splitlines()) == 1, (argv, err)
        assert err.startswith("deepshrink: error: ")
    assert not (tmp_path / "o").exists()


def test_python_dash_m_entry_point(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "deepshrink", "eval", str(tmp_path / "x"), "--data", "digits"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"deepshrink: error: model file not found: {tmp_path / 'x'}"
    assert "Traceback" not in proc.stderr


def test_help_lists_commands(capsys):
    code, out, _ = _fail(capsys, "--help")
    assert code == 0
    for command in ("demo", "train", "eval", "bench", "import-pretrained"):
        assert command in out


@pytest.mark.parametrize("flag,value,needle", [
    ("--epochs", "-1", "--epochs must be an integer >= 0, got -1"),
    ("--momentum", "1.5", "--momentum must be in [0, 1), got 1.5"),
    ("--lr", "inf", "--lr must be a finite number > 0, got inf"),
])
def test_train_ranges_are_the_configs_and_name_the_flag(tmp_path, capsys, flag, value, needle):
    code = main(["train", "--model", "digits-cnn", "--data", "digits", "--out", str(tmp_path / "x"), flag, value])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and err.count("\n") == 1
    assert not (tmp_path / "x").exists()
