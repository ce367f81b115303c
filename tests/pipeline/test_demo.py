from deepshrink.cli import main
from deepshrink.models import load_model
from deepshrink.pipeline.demo import run_demo


def test_short_demo_trains_and_saves(tmp_path):
    result = run_demo(tmp_path, epochs=3, progress=False)
    assert result.train_images == 1437 and result.test_images == 360
    assert result.top1 > 0.8  # three epochs already learn the digits
    model, info = load_model(result.model_path)
    assert info.arch.name == "digits-cnn" and info.dataset == "digits"


def test_demo_command_prints_accuracy(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--epochs", "2"]) == 0
    out = capsys.readouterr().out
    assert "test top-1" in out and "model written to" in out
