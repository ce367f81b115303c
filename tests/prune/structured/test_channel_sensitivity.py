"""Channel sensitivity (Li et al.'s filter-selection experiment): one group at a time, on copies,
by criterion; ``l1-largest`` is ``l1`` reversed."""

import json

import pytest
import torch

from deepshrink.cli import main
from deepshrink.data import load_dataset
from deepshrink.errors import UserError
from deepshrink.models import build_model, load_model, make_spec, save_model
from deepshrink.pipeline.train import new_model_info
from deepshrink.prune.structured import StructuredConfig, plan_channels
from deepshrink.prune.structured.importance import channel_scores
from deepshrink.prune.structured.graph import DependencyGraph
from deepshrink.prune.structured.sensitivity import channel_sensitivity, sensitivity_groups

SHAPE = (3, 16, 16)


def _resnet() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(make_spec("resnet20", num_classes=4, in_channels=3, image_size=16)).eval()


def _closeness(reference: torch.nn.Module):
    """An 'accuracy' in (0, 1]: 1 for outputs equal to the reference model's."""
    x = torch.randn(8, *SHAPE, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        target = reference(x)

    def evaluate(model) -> float:
        with torch.no_grad():
            return float(1 / (1 + (model.eval()(x) - target).abs().mean()))
    return evaluate


def test_l1_largest_is_l1_reversed():
    model = _resnet()
    group = DependencyGraph(model, SHAPE).groups[0]
    l1, largest = channel_scores(model, group, "l1"), channel_scores(model, group, "l1-largest")
    assert torch.equal(torch.argsort(l1, stable=True), torch.argsort(-largest, stable=True)) and largest.min() >= 0
    removed = plan_channels(model, SHAPE, StructuredConfig("l1-largest", ratio=0.5)).removed
    kept = next(index for g, index in removed.items() if g.name == group.name)
    assert set(kept.tolist()) == set(torch.argsort(l1, descending=True)[:group.n // 2].tolist())


def test_the_scan_prunes_one_group_at_a_time_on_copies():
    model = _resnet()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    groups = sensitivity_groups(DependencyGraph(model, SHAPE))
    assert len(groups) == 9 and all(g.endswith("conv1") for g in groups)  # Li et al.: each block's first conv
    groups = groups[::4]  # layer1.0, layer2.1, layer3.2: enough to see one group at a time
    result = channel_sensitivity(model, SHAPE, _closeness(model), criteria=("l1", "random"),
                                 ratios=(0.0, 0.5), seeds=(0, 1), groups=groups)
    assert list(result.accuracy["l1"]) == groups
    assert all(len(runs) == 1 for runs in result.accuracy["l1"].values())      # deterministic: one seed
    assert all(len(runs) == 2 for runs in result.accuracy["random"].values())  # one run per seed
    assert all(runs[0][0] == result.baseline == 1.0 for runs in result.accuracy["l1"].values())  # ratio 0: unchanged
    assert all(runs[0][1] < 1.0 for runs in result.accuracy["l1"].values())
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert len(result.rows()) == 3 * 3


def test_an_unknown_group_is_a_user_error():
    model = _resnet()
    with pytest.raises(UserError, match="not a prunable channel group: conv9"):
        channel_sensitivity(model, SHAPE, _closeness(model), groups=["conv9"])


def test_the_command_prints_plots_and_writes_json(tmp_path, capsys):
    data = load_dataset("synthetic", "train")
    info = new_model_info("resnet20", data, {"width": 8})
    torch.manual_seed(0)
    path = save_model(tmp_path / "m.safetensors", build_model(info.arch), info)
    argv = ["channel-sensitivity", str(path), "--data", "synthetic", "--limit-test", "8",
            "--ratios", "0.5", "--criteria", "l1", "random", "--seeds", "0", "--plot", str(tmp_path / "s.png")]
    assert main(argv + ["--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ratios"] == [0.5] and {r["criterion"] for r in out["rows"]} == {"l1", "random"}
    assert (tmp_path / "s.png").stat().st_size > 10_000
    assert main(argv[:-2]) == 0
    assert "random seed 0" in capsys.readouterr().out
    assert main(argv[:6] + ["--ratios", "0.5", "0.25"]) == 2
    assert "--ratios must be increasing" in capsys.readouterr().err
    assert load_model(path)[0] is not None
