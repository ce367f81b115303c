"""Importing akamaster's pretrained CIFAR ResNets: exact tensors, refusals, a quick accuracy check."""

import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from deepshrink.errors import UserError
from deepshrink.models.pretrained import (
    PRETRAINED_MEAN,
    PRETRAINED_STD,
    import_pretrained,
    load_pretrained_state,
)

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
PRETRAINED = SHARED / "pretrained"


def checkpoint(name):
    if not PRETRAINED.is_dir():
        pytest.skip(f"{PRETRAINED} is absent")
    (path,) = PRETRAINED.glob(f"{name}-*.th")
    return path


@pytest.mark.shared_data
@pytest.mark.parametrize("name", ["resnet20", "resnet32", "resnet44", "resnet56"])
def test_import_loads_every_tensor(name):
    path = checkpoint(name)
    raw = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    model, spec = import_pretrained(name, path)
    assert not model.training
    assert spec.name == name and spec.kwargs == {"num_classes": 10, "in_channels": 3, "image_size": 32}
    loaded = model.state_dict()
    assert all(key.startswith("module.") for key in raw)
    for key, value in raw.items():
        assert torch.equal(loaded[key.removeprefix("module.")], value), key
    extra = set(loaded) - {key.removeprefix("module.") for key in raw}
    assert extra and all(key.endswith("num_batches_tracked") for key in extra)
    assert all(loaded[key].item() == 0 for key in extra)


@pytest.mark.shared_data
def test_bare_state_dict_and_shape_mismatch(tmp_path):
    state = load_pretrained_state(checkpoint("resnet20"))
    assert "conv1.weight" in state and not any(key.startswith("module.") for key in state)
    torch.save(state, tmp_path / "bare.pt")
    model, _ = import_pretrained("resnet20", tmp_path / "bare.pt")
    assert torch.equal(model.layer3[2].bn2.running_var, state["layer3.2.bn2.running_var"])

    state["layer2.1.conv1.weight"] = state["layer2.1.conv1.weight"][:, :16]
    torch.save({"state_dict": state}, tmp_path / "narrow.pt")
    shapes = r"layer2\.1\.conv1\.weight has shape \(32, 16, 3, 3\) in the checkpoint but \(32, 32, 3, 3\)"
    with pytest.raises(UserError, match=shapes):
        import_pretrained("resnet20", tmp_path / "narrow.pt")


@pytest.mark.shared_data
def test_wrong_depth_is_user_error():
    blocks = r"5 residual blocks per stage \(resnet32\), not 3; unexpected layer1\.3\."
    with pytest.raises(UserError, match=blocks) as info:
        import_pretrained("resnet20", checkpoint("resnet32"))
    assert "does not fit resnet20" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(UserError, match=r"missing layer1\.5\."):
        import_pretrained("resnet56", checkpoint("resnet32"))


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_malicious_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.th"
    torch.save({"state_dict": {"conv1.weight": torch.zeros(1)}, "extra": _Payload(marker)}, path)
    with pytest.raises(UserError, match=r"is not a plain weights checkpoint \(refused to unpickle .*system"):
        load_pretrained_state(path)
    with pytest.raises(UserError, match="refused to unpickle"):
        import_pretrained("resnet20", path)
    assert not marker.exists()
    # the payload is live: the archive really references os.system (posix.system / nt.system)
    with zipfile.ZipFile(path) as archive:
        pickled = archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))
    assert b"system" in pickled


def test_missing_and_foreign_files(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_pretrained_state(tmp_path / "nope.th")
    with pytest.raises(UserError, match="does not exist"):
        import_pretrained("resnet20", tmp_path / "nope.th")
    with pytest.raises(UserError, match="is not a file"):
        load_pretrained_state(tmp_path)
    (tmp_path / "text.th").write_text("not a checkpoint\n")
    with pytest.raises(UserError, match="not a PyTorch checkpoint"):
        load_pretrained_state(tmp_path / "text.th")
    torch.save({"weights": [1, 2]}, tmp_path / "list.th")
    with pytest.raises(UserError, match="state dict of named tensors"):
        load_pretrained_state(tmp_path / "list.th")
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "nohead.th")
    with pytest.raises(UserError, match="no 2-D linear.weight"):
        import_pretrained("resnet20", tmp_path / "nohead.th")


def test_only_resnets():
    with pytest.raises(UserError, match="supports resnet110, resnet20.*got 'lenet5'"):
        import_pretrained("lenet5", "whatever.th")


@pytest.mark.shared_data
def test_resnet20_accuracy_on_500_test_images():
    model, _ = import_pretrained("resnet20", checkpoint("resnet20"))
    if not (SHARED / "cifar10_test.npz").is_file():
        pytest.skip("cifar10_test.npz is absent")
    with np.load(SHARED / "cifar10_test.npz") as data:
        x, y = data["x"][:500], data["y"][:500]
    x = torch.from_numpy(x).float().div(255).permute(0, 3, 1, 2)
    x = (x - torch.tensor(PRETRAINED_MEAN).view(1, 3, 1, 1)) / torch.tensor(PRETRAINED_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        correct = (model(x).argmax(1) == torch.from_numpy(y)).sum().item()
    assert correct >= 440  # 88 %; akamaster reports 91.73 % on all 10,000
