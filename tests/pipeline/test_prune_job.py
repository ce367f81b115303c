import pytest
import torch

from deepshrink.data import load_dataset
from deepshrink.errors import ConfigError, UserError
from deepshrink.models import build_model, load_model, save_model
from deepshrink.pipeline.prune import prune_job
from deepshrink.prune import PruneConfig
from deepshrink.pipeline.train import new_model_info
from deepshrink.prune import masks_of
from deepshrink.train import TrainConfig


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", "train").subset(256), load_dataset("digits", "test").subset(128)


@pytest.fixture
def model_file(tmp_path, digits):
    torch.manual_seed(0)
    info = new_model_info("digits-cnn", digits[0])
    return save_model(tmp_path / "dense.safetensors", build_model(info.arch), info)


def _config(epochs):
    return TrainConfig(epochs=epochs, batch_size=64, lr=0.02, device="cpu", progress=False)


def test_oneshot_without_fine_tuning_needs_no_data(model_file, tmp_path):
    result = prune_job(model_file, tmp_path / "p.safetensors", PruneConfig(0.5), _config(0))
    assert list(result.layer_sparsity) == ["conv2", "conv3"]  # conv1 and fc excluded by default
    assert result.layer_sparsity["conv2"] == 0.5 and result.test_top1 is None
    model, info = load_model(tmp_path / "p.safetensors")
    record = info.history[-1]
    assert record["stage"] == "prune" and record["target_sparsity"] == 0.5 and record["epochs"] == 0
    assert set(masks_of(model)) == {"conv2", "conv3"}
    assert int((model.conv3.weight == 0).sum()) == model.conv3.weight.numel() // 2


def test_global_linear_schedule_with_fine_tuning(model_file, tmp_path, digits):
    settings = PruneConfig(0.6, scope="global", schedule="linear", prune_epochs=1,
                             exclude_first_last=False)
    result = prune_job(model_file, tmp_path / "p.safetensors", settings, _config(2),
                       train_set=digits[0], test_set=digits[1])
    assert result.sparsity == pytest.approx(0.6, abs=1e-4)
    assert len(set(round(s, 3) for s in result.layer_sparsity.values())) > 1  # global: layers differ
    assert 0.0 <= result.test_top1 <= 1.0
    _, info = load_model(tmp_path / "p.safetensors")
    assert [h["stage"] for h in info.history] == ["train", "prune"]
    assert info.history[-1]["prune_epochs"] == 1 and info.history[-1]["scope"] == "global"


def test_max_layer_sparsity_caps_every_layer_and_is_recorded(model_file, tmp_path):
    settings = PruneConfig(0.7, scope="global", max_layer_sparsity=0.75, exclude_first_last=False)
    result = prune_job(model_file, tmp_path / "p.safetensors", settings, _config(0))
    assert result.sparsity == pytest.approx(0.7, abs=1e-4)
    assert max(result.layer_sparsity.values()) <= 0.75 + 1e-9
    uncapped = prune_job(model_file, tmp_path / "u.safetensors", PruneConfig(0.7, scope="global",
                         exclude_first_last=False), _config(0))
    assert max(uncapped.layer_sparsity.values()) > 0.75  # the cap did bind
    _, info = load_model(tmp_path / "p.safetensors")
    assert info.history[-1]["max_layer_sparsity"] == 0.75


def test_a_std_factor_above_one_is_not_taken_for_a_sparsity():
    assert PruneConfig(criterion="std", std_factor=1.5).amount == 1.5
    assert PruneConfig(criterion="std", std_factor=1.5, scope="global").amount == 1.5


@pytest.mark.parametrize("kwargs,needle", [
    (dict(sparsity=1.0), r"PruneConfig.sparsity must be in \[0, 1\), got 1.0"),
    (dict(sparsity=-0.1), "PruneConfig.sparsity must be"),
    (dict(sparsity=None), "PruneConfig.sparsity must be"),
    (dict(criterion="std", std_factor=-1.0), "PruneConfig.std_factor must be a finite number >= 0"),
    (dict(criterion="std", sparsity=0.5), "PruneConfig.sparsity does not apply to the std criterion"),
    (dict(sparsity=0.5, std_factor=1.0), "PruneConfig.std_factor applies to the std criterion only"),
    (dict(sparsity=0.5, max_layer_sparsity=0.0), r"PruneConfig.max_layer_sparsity must be in \(0, 1\]"),
    (dict(sparsity=0.5, max_layer_sparsity=0.8), "global scope only"),
    (dict(sparsity=0.9, scope="global", max_layer_sparsity=0.8), "cannot be reached"),
    (dict(sparsity=0.5, criterion="biggest"), "PruneConfig.criterion must be one of magnitude, std, random"),
    (dict(sparsity=0.5, prune_epochs=0), "PruneConfig.prune_epochs must be an integer >= 1"),
])
def test_a_config_checks_itself_once_naming_its_field(kwargs, needle):
    with pytest.raises(ConfigError, match=needle):
        PruneConfig(**kwargs)


@pytest.mark.parametrize("settings,epochs,needle", [
    (PruneConfig(0.5), 2, "needs training data"),
    (PruneConfig(0.5, schedule="linear", prune_epochs=5), 2, "PruneConfig.prune_epochs must be at most the 2"),
    (PruneConfig(0.5, exclude=("nope*",)), 0, "PruneConfig.exclude pattern 'nope\\*' matches no"),
])
def test_bad_settings_are_user_errors_and_write_nothing(model_file, tmp_path, settings, epochs, needle):
    config = TrainConfig(epochs=epochs, device="cpu")
    with pytest.raises(UserError, match=needle):
        prune_job(model_file, tmp_path / "p.safetensors", settings, config)
    assert not (tmp_path / "p.safetensors").exists()


def _early_exit_file(path, dataset):
    """A digits-cnn with exits after ``bn1`` and ``pool``, saved at ``path``."""
    from deepshrink.models.early_exit import early_exit_spec

    info = new_model_info("digits-cnn", dataset)
    info.arch = early_exit_spec(info.arch, ["bn1", "pool"])
    torch.manual_seed(0)
    return save_model(path, build_model(info.arch), info)


def test_fine_tuning_an_early_exit_model_trains_its_exits(tmp_path, digits):
    from deepshrink.models.early_exit import EarlyExitModel

    source = _early_exit_file(tmp_path / "exits.safetensors", digits[0])
    before, _ = load_model(source)
    settings = PruneConfig(0.5, exclude=("exits.*",))
    prune_job(source, tmp_path / "p.safetensors", settings, _config(1), train_set=digits[0], run_dir=tmp_path / "run")
    after, info = load_model(tmp_path / "p.safetensors")
    assert isinstance(after, EarlyExitModel) and after.exit_points == ["bn1", "pool"]
    assert info.arch.name == "early-exit" and info.history[-1]["stage"] == "prune"
    for head_before, head_after in zip(before.exits, after.exits, strict=True):
        # the joint loss reaches every head (trained against the final classifier only, none moves)
        assert not torch.equal(head_before[2].weight, head_after[2].weight)
        assert not torch.equal(head_before[2].bias, head_after[2].bias)
    x = torch.randn(3, *info.input.shape)
    assert after(x).shape == (3, 10) and [e.shape for e in after.exit_logits] == [(3, 10)] * 2
