"""``deepshrink quantize``: happy paths and user mistakes (exit 2, one line)."""

import json

import pytest
import torch

from deepshrink.cli import main
from deepshrink.data import load_dataset
from deepshrink.models import build_model, load_model, save_model
from deepshrink.pipeline.train import new_model_info
from deepshrink.quant import quantizers_of


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    info = new_model_info("digits-cnn", load_dataset("synthetic", "train"))
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "m.safetensors"
    save_model(path, build_model(info.arch), info)
    return path


def test_linear_ptq_with_evaluation(model_file, tmp_path, capsys):
    out = tmp_path / "q.safetensors"
    code = main(["quantize", str(model_file), "--method", "linear", "--bits", "4", "--symmetric",
                 "--per-channel", "--data", "synthetic", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0 and "linear 4-bit weights in 2 layers" in printed and "test top-1" in printed
    model, _ = load_model(out)
    quantizer = quantizers_of(model)["conv2"]
    assert quantizer.spec() == {"bits": 4, "symmetric": True, "per_channel": True}


def test_kmeans_with_fine_tuning_json(model_file, tmp_path, capsys):
    out = tmp_path / "q.safetensors"
    code = main(["quantize", str(model_file), "--method", "kmeans", "--bits", "2", "--init", "density",
                 "--quantize-first-last", "--exclude", "conv3", "--finetune-epochs", "1",
                 "--data", "synthetic", "--limit-train", "128", "--batch-size", "32", "--json", "--out", str(out)])
    record = json.loads(capsys.readouterr().out)
    assert code == 0
    assert record["layers"] == ["conv1", "conv2", "fc"] and record["init"] == "density"
    assert record["finetune_epochs"] == 1 and 0 <= record["test_top1"] <= 1
    before, after = record["before"], record["after"]  # the before/after table's data
    assert 0 <= before["top1"] <= 1 and after["top1"] == record["test_top1"]
    assert record["change"]["top1_points"] == pytest.approx(100 * (after["top1"] - before["top1"]))
    assert before["bytes"] == model_file.stat().st_size and after["bytes"] == out.stat().st_size
    assert before["macs"] == after["macs"] > 0


@pytest.mark.parametrize("extra,needle", [
    (["--bits", "9"], "2..8 or 16"),
    (["--bits", "x"], "not an integer"),
    (["--bits", "4", "--finetune-epochs", "2"], "needs --data"),
    (["--bits", "4", "--exclude", "nope*"], "matches no"),
    (["--bits", "8", "--activation-bits", "9", "--data", "synthetic"], "2..8 or 16"),
    (["--bits", "8", "--activation-bits", "8"], "give --data"),
    (["--bits", "8", "--activation-bits", "8", "--observer", "fixed", "--data", "synthetic"], "invalid choice"),
    (["--bits", "8", "--observer", "ema"], "applies to --activation-bits"),
    ([], "give --bits B, or --mixed-budget-kb"),
    (["--bits", "4", "--mixed-budget-kb", "10", "--data", "synthetic"], "exclude each other"),
    (["--mixed-budget-kb", "10"], "give --data"),
    (["--mixed-budget-kb", "0.5", "--data", "synthetic"], "below the smallest size"),
    (["--mixed-budget-kb", "50", "--mixed-bits", "4", "9", "--data", "synthetic"], "2..8 or 16"),
    (["--mixed-budget-kb", "50", "--mixed-criterion", "x", "--data", "synthetic"], "invalid choice"),
    (["--bits", "8", "--activation-bits", "8", "--calibration-images", "0", "--data", "synthetic"],
     "out of range"),
])
def test_mistakes_exit_2_with_one_line(model_file, tmp_path, capsys, extra, needle):
    argv = ["quantize", str(model_file), "--method", "linear", "--out", str(tmp_path / "q.safetensors"), *extra]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse errors exit directly
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "q.safetensors").exists()


def test_kmeans_16_bits_and_missing_file(tmp_path, model_file, capsys):
    assert main(["quantize", str(model_file), "--method", "kmeans", "--bits", "16", "--out", str(tmp_path / "q")]) == 2
    assert main(["quantize", str(tmp_path / "none"), "--method", "kmeans", "--bits", "4", "--out", str(tmp_path / "q")]) == 2
    err = capsys.readouterr().err
    assert "2..8" in err and "model file not found" in err


def test_activation_bits_with_calibration(model_file, tmp_path, capsys):
    from deepshrink.quant import activation_quantizers_of

    out = tmp_path / "q.safetensors"
    code = main(["quantize", str(model_file), "--method", "linear", "--bits", "8", "--activation-bits", "6",
                 "--observer", "percentile", "--calibration-images", "40", "--data", "synthetic",
                 "--limit-test", "50", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0 and "6-bit activations (percentile ranges from 40 training images)" in printed
    model, info = load_model(out)
    quantizers = activation_quantizers_of(model)
    assert list(quantizers) == ["conv2.input_quantizer", "conv3.input_quantizer"]
    assert all(q.bits == 6 and q.frozen and q.observer.name == "percentile" for q in quantizers.values())
    record = info.history[-1]
    assert record["activation_bits"] == 6 and record["calibration_images"] == 40


def test_mixed_precision_fits_the_budget_and_records_the_bits(model_file, tmp_path, capsys):
    out = tmp_path / "q.safetensors"
    code = main(["quantize", str(model_file), "--method", "linear", "--per-channel", "--mixed-budget-kb", "40",
                 "--mixed-bits", "2", "4", "8", "--calibration-images", "64", "--data", "synthetic",
                 "--json", "--out", str(out)])
    record = json.loads(capsys.readouterr().out)
    assert code == 0 and record["mixed_precision"] is True and "bits" not in record
    assert record["size_bytes"] <= record["budget_bytes"] == 40 * 1024
    assert set(record["assignment"]) == {"conv2", "conv3"} and set(record["assignment"].values()) <= {2, 4, 8}
    model, info = load_model(out)
    assert {name: q.bits for name, q in quantizers_of(model).items()} == record["assignment"]
    assert info.history[-1]["assignment"] == record["assignment"]
