"""``deepshrink prune --structured``: physically smaller models that reload by themselves."""

import pytest
import torch

from deepshrink.analysis import count_params, model_costs
from deepshrink.cli import main
from deepshrink.models import InputSpec, ModelInfo, build_model, load_model, make_spec, save_model


@pytest.fixture(scope="module")
def resnet_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("s") / "r20.safetensors"
    spec = make_spec("resnet20", num_classes=4, in_channels=3, image_size=16)
    torch.manual_seed(0)
    save_model(path, build_model(spec), ModelInfo(spec, InputSpec((3, 16, 16), (0.5,) * 3, (0.2,) * 3)))
    return path


def test_structured_ratio_shrinks_layers_and_reloads(resnet_file, tmp_path, capsys):
    out = tmp_path / "small.safetensors"
    assert main(["prune", str(resnet_file), "--structured", "--criterion", "fpgm", "--ratio", "0.5",
                 "--li-resnet-rule", "--out", str(out)]) == 0
    assert "MACs" in capsys.readouterr().out
    dense, _ = load_model(resnet_file)
    small, info = load_model(out)
    assert count_params(small).total < 0.75 * count_params(dense).total
    assert small.layer1[0].conv1.out_channels == 8  # half of 16, the block output untouched
    assert small(torch.randn(2, 3, 16, 16)).shape == (2, 4)
    assert info.history[-1]["stage"] == "structured-prune"


@pytest.mark.parametrize("extra", [[], ["--global"]])
def test_structured_target_macs(resnet_file, tmp_path, capsys, extra):
    out = tmp_path / "small.safetensors"
    assert main(["prune", str(resnet_file), "--structured", "--target-macs-reduction", "0.4",
                 "--round-to", "8", *extra, "--out", str(out)]) == 0
    dense, small = load_model(resnet_file)[0], load_model(out)[0]
    before, after = (model_costs(m, (3, 16, 16)).totals["macs"] for m in (dense, small))
    assert 0.585 * before < after <= 0.6 * before  # past the target by less than one 8-channel step
    printed = capsys.readouterr().out
    assert f"MACs {before:,} -> {after:,} ({100 * (1 - after / before):.2f}% fewer, asked 40%; " in printed


@pytest.mark.parametrize("argv,needle", [
    (["--structured", "--sparsity", "0.5"], "--ratio R or --target-macs-reduction"),
    (["--structured", "--ratio", "0.5", "--criterion", "magnitude"], "--structured takes --criterion"),
    (["--ratio", "0.5"], "need --structured"),
    (["--sparsity", "0.5", "--criterion", "fpgm"], "is for --structured"),
])
def test_mode_mixups_exit_2(resnet_file, tmp_path, capsys, argv, needle):
    assert main(["prune", str(resnet_file), *argv, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_structured_gradual_schedule(tmp_path, capsys):
    from deepshrink.data import load_dataset
    from deepshrink.pipeline.train import new_model_info

    info = new_model_info("resnet20", load_dataset("synthetic", "train"), {"width": 8})
    dense = tmp_path / "dense.safetensors"
    torch.manual_seed(0)
    save_model(dense, build_model(info.arch), info)
    out = tmp_path / "small.safetensors"
    assert main(["prune", str(dense), "--structured", "--ratio", "0.5", "--schedule", "agp", "--epochs", "2",
                 "--data", "synthetic", "--limit-train", "32", "--limit-test", "16", "--batch-size", "16",
                 "--out", str(out)]) == 0
    assert "test top-1" in capsys.readouterr().out
    small, info = load_model(out)
    assert small.layer1[0].conv1.out_channels == 4 and info.history[-1]["schedule"] == "agp"


def test_structured_schedule_without_epochs_exits_2(resnet_file, tmp_path, capsys):
    assert main(["prune", str(resnet_file), "--structured", "--ratio", "0.5", "--schedule", "linear",
                 "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "--schedule 'linear' prunes while fine-tuning: give at least 1 epoch" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("round_to,noted", [("1", True), ("8", False)])
def test_structured_notes_channel_counts_off_the_kernel_multiple(resnet_file, tmp_path, capsys, round_to, noted):
    out = tmp_path / "small.safetensors"
    assert main(["prune", str(resnet_file), "--structured", "--ratio", "0.3", "--round-to", round_to,
                 "--out", str(out)]) == 0
    assert ("not a multiple of 8" in capsys.readouterr().out) == noted
    assert out.exists()
