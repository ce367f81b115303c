import io
import os

import pytest
import torch

from deepshrink.errors import UserError
from deepshrink.train.checkpoint import MAGIC, load_checkpoint, save_checkpoint


def test_round_trip(tmp_path):
    state = {"epoch": 3, "model": {"w": torch.arange(6.0)}, "config": {"lr": 0.1, "milestones": [1.0]}}
    save_checkpoint(tmp_path / "c.ckpt", state)
    back = load_checkpoint(tmp_path / "c.ckpt")
    assert back["epoch"] == 3 and back["config"] == state["config"]
    assert torch.equal(back["model"]["w"], state["model"]["w"])


@pytest.mark.parametrize("damage", ["truncate", "flip", "magic"])
def test_damaged_checkpoint_is_refused(tmp_path, damage):
    path = tmp_path / "c.ckpt"
    save_checkpoint(path, {"w": torch.ones(100)})
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip":
        data[-10] ^= 0x01
    else:
        data[0] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(UserError):
        load_checkpoint(path)


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {_Evil.marker}",))


def test_pickled_code_is_refused_even_with_valid_checksum(tmp_path):
    import hashlib

    _Evil.marker = tmp_path / "pwned"
    buffer = io.BytesIO()
    torch.save({"payload": _Evil()}, buffer)
    payload = buffer.getvalue()
    (tmp_path / "c.ckpt").write_bytes(MAGIC + hashlib.sha256(payload).digest() + payload)
    with pytest.raises(UserError, match="could not be loaded safely"):
        load_checkpoint(tmp_path / "c.ckpt")
    assert not _Evil.marker.exists()


def test_missing_checkpoint(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_checkpoint(tmp_path / "nope.ckpt")
