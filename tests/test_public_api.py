"""The public API at the package top (``import deepshrink as ds``): verbs with configs and
``filter_fn``, files for any network, and the README's "Your own model" example, run as is."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch import nn

import deepshrink as ds
from deepshrink.prune.mask import masks_of
from deepshrink.quant import quantizers_of

README = Path(__file__).resolve().parents[1] / "README.md"


def _readme_example() -> str:
    text = README.read_text()
    block = re.search(r"<!-- your-own-model:begin -->\n```python\n(.*?)```\n<!-- your-own-model:end -->", text, re.S)
    assert block, "README lost its 'Your own model' example"
    return block.group(1)


def test_the_readme_example_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    namespace: dict = {"__name__": "readme_example"}
    exec(compile(_readme_example(), "README.md", "exec"), namespace)  # its own asserts check the round trip
    assert (tmp_path / "mynet.dsz").stat().st_size > 0
    model = namespace["model"]
    assert masks_of(model) and quantizers_of(model)


def test_every_name_of_the_example_comes_from_deepshrink_itself():
    used = set(re.findall(r"\bds\.(\w+)", _readme_example()))
    assert used and used <= set(ds.__all__), used - set(ds.__all__)


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.conv3 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        x = torch.relu(self.conv3(torch.relu(self.conv2(torch.relu(self.conv1(x))))))
        return self.fc(x.mean((2, 3)))


def test_default_selection_leaves_the_stem_and_classifier_alone():
    model = ds.prune_(_Net(), ds.PruneConfig(sparsity=0.5))
    assert sorted(masks_of(model)) == ["conv2", "conv3"]
    model = ds.quantize_(_Net(), ds.QuantConfig(bits=4))
    assert sorted(quantizers_of(model)) == ["conv2", "conv3"]


def test_filter_fn_replaces_the_default_selection():
    only_edges = lambda module, fqn: fqn in ("conv1", "fc")  # noqa: E731
    model = ds.prune_(_Net(), ds.PruneConfig(sparsity=0.5), filter_fn=only_edges)
    assert sorted(masks_of(model)) == ["conv1", "fc"]
    model = ds.quantize_(_Net(), ds.QuantConfig(bits=4), filter_fn=lambda m, fqn: isinstance(m, nn.Linear))
    assert sorted(quantizers_of(model)) == ["fc"]


def test_filter_fn_keeps_channel_groups_whole():
    model = _Net()
    result = ds.prune_channels(model, torch.randn(2, 3, 8, 8), ds.StructuredConfig(ratio=0.5),
                               filter_fn=lambda m, fqn: fqn == "conv2")
    assert (model.conv1.out_channels, model.conv2.out_channels, model.conv3.out_channels) == (8, 4, 8)
    assert result.skipped["conv1"] == "left out by filter_fn"
    assert result.macs_after < result.macs_before


def test_a_prune_schedule_is_a_training_hook_not_a_one_shot_verb():
    with pytest.raises(ds.ConfigError, match="PruneConfig.schedule 'agp' prunes during training"):
        ds.prune_(_Net(), ds.PruneConfig(sparsity=0.5, schedule="agp"))
    model = _Net()
    hook = ds.pruning_hook(model, ds.PruneConfig(sparsity=0.5, schedule="agp"), epochs=4)
    assert isinstance(hook, ds.TrainHook) and sorted(masks_of(model)) == ["conv2", "conv3"]


@pytest.mark.parametrize("make,message", [
    (lambda: ds.PruneConfig(sparsity=1.5), r"PruneConfig.sparsity must be in \[0, 1\), got 1.5"),
    (lambda: ds.QuantConfig(bits=12), "QuantConfig.bits must be one of 2..8 or 16 for linear quantization, got 12"),
    (lambda: ds.StructuredConfig(ratio=0.5, round_to=0), "StructuredConfig.round_to must be an integer >= 1, got 0"),
    (lambda: ds.StructuredConfig(), r"StructuredConfig.ratio \(or target_macs_reduction\) must be given"),
])
def test_configs_check_themselves_and_name_their_field(make, message):
    with pytest.raises(ds.ConfigError, match=message) as caught:
        make()
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, ds.UserError)


def test_a_file_without_architecture_needs_the_instance(tmp_path):
    model = ds.prune_(_Net(), ds.PruneConfig(sparsity=0.3))
    ds.save_model(tmp_path / "m.safetensors", model)
    with pytest.raises(ds.UserError, match="model="):
        ds.load_model(tmp_path / "m.safetensors")
    restored, _ = ds.load_model(tmp_path / "m.safetensors", model=_Net())
    x = torch.randn(2, 3, 8, 8)
    assert torch.equal(restored(x), model.eval()(x))
