import os
import pickle

import numpy as np
import pytest
import torch

from deepshrink.data import load_dataset
from deepshrink.data.cifar import CIFAR10_CLASSES, load_cifar10
from deepshrink.errors import UserError

_NAMES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
PER_BATCH = 3


def _fake_batches(seed=0):
    """{batch name: (data uint8 (PER_BATCH, 3072) CHW-planar, labels list)} for all six batches."""
    rng = np.random.default_rng(seed)
    return {
        name: (
            rng.integers(0, 256, (PER_BATCH, 3072), dtype=np.uint8),
            rng.integers(0, 10, PER_BATCH).tolist(),
        )
        for name in _NAMES["train"] + _NAMES["test"]
    }


def _write_py(folder, batches):
    folder.mkdir(parents=True)
    for name, (data, labels) in batches.items():
        batch = {
            b"batch_label": f"{name} of fake CIFAR-10".encode(),
            b"labels": labels,
            b"data": data,
            b"filenames": [f"img_{i}.png".encode() for i in range(len(labels))],
        }
        with open(folder / name, "wb") as handle:
            pickle.dump(batch, handle, protocol=2)


def _write_bin(folder, batches):
    folder.mkdir(parents=True)
    for name, (data, labels) in batches.items():
        records = np.concatenate([np.array(labels, np.uint8)[:, None], data], axis=1)
        (folder / f"{name}.bin").write_bytes(records.tobytes())


def _write_npz(folder, batches):
    folder.mkdir(parents=True)
    for split, names in _NAMES.items():
        data = np.concatenate([batches[n][0] for n in names])
        labels = np.concatenate([batches[n][1] for n in names]).astype(np.int64)
        x = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # HWC, as in the npz files
        np.savez(folder / f"cifar10_{split}.npz", x=x, y=labels)


@pytest.mark.parametrize("split", ["train", "test"])
def test_three_layouts_give_identical_chw_images(tmp_path, split):
    batches = _fake_batches()
    _write_py(tmp_path / "py" / "cifar-10-batches-py", batches)
    _write_bin(tmp_path / "bin" / "cifar-10-batches-bin", batches)
    _write_npz(tmp_path / "npz", batches)
    planar = np.concatenate([batches[n][0] for n in _NAMES[split]])
    expected_images = torch.from_numpy(planar.reshape(-1, 3, 32, 32))
    expected_labels = torch.tensor(sum((batches[n][1] for n in _NAMES[split]), []))
    folders = [
        tmp_path / "py",
        tmp_path / "py" / "cifar-10-batches-py",
        tmp_path / "bin",
        tmp_path / "bin" / "cifar-10-batches-bin",
        tmp_path / "npz",
    ]
    for folder in folders:
        data = load_cifar10(folder, split)
        assert torch.equal(data.images, expected_images), folder
        assert torch.equal(data.labels, expected_labels), folder
        assert data.classes == CIFAR10_CLASSES and data.image_shape == (3, 32, 32)
        assert data.augment.crop_padding == 4 and data.augment.hflip
    assert len(load_dataset("cifar10", split, tmp_path / "npz")) == PER_BATCH * len(_NAMES[split])


class _Evil:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def test_malicious_pickle_is_refused_and_never_runs(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    _write_py(folder, _fake_batches())
    marker = tmp_path / "pwned"
    data, _ = _fake_batches()["data_batch_3"]
    with open(folder / "data_batch_3", "wb") as handle:
        pickle.dump({b"labels": _Evil(f"echo pwned > {marker}"), b"data": data}, handle, protocol=2)
    refused = r"refusing to load data_batch_3: it references (os|posix|nt)\.system"
    with pytest.raises(UserError, match=refused):
        load_cifar10(tmp_path, "train")
    assert not marker.exists()


def test_other_globals_are_refused(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    _write_py(folder, _fake_batches())
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": eval}, protocol=2))
    with pytest.raises(UserError, match=r"(builtins|__builtin__)\.eval"):
        load_cifar10(folder, "test")
    # _codecs.encode is admitted only as the latin1 bytes encoding Python 3 writes at protocol 2
    zlib_encode = b"\x80\x02c_codecs\nencode\nX\x03\x00\x00\x00abcX\x04\x00\x00\x00zlib\x86R."
    (folder / "test_batch").write_bytes(zlib_encode)
    with pytest.raises(UserError, match="latin1"):
        load_cifar10(folder, "test")


@pytest.mark.parametrize(
    "batch, problem",
    [
        ([1, 2, 3], "dict"),
        ({b"data": np.zeros((3, 3000), np.uint8), b"labels": [0, 1, 2]}, "3072"),
        ({b"data": np.zeros((3, 3072), np.int32), b"labels": [0, 1, 2]}, "uint8"),
        ({b"data": np.zeros((3, 3072), np.uint8), b"labels": [0, 1]}, "labels"),
        ({b"data": np.zeros((3, 3072), np.uint8), b"labels": [0, 1, 10]}, "0..9"),
    ],
)
def test_malformed_python_batch(tmp_path, batch, problem):
    (tmp_path / "test_batch").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(UserError, match=problem):
        load_cifar10(tmp_path, "test")


def test_garbage_python_batch(tmp_path):
    (tmp_path / "test_batch").write_bytes(b"not a pickle at all")
    with pytest.raises(UserError, match="test_batch"):
        load_cifar10(tmp_path, "test")


def test_missing_folder_names_the_expected_layout(tmp_path):
    for folder in (tmp_path / "absent", tmp_path):
        with pytest.raises(UserError) as info:
            load_cifar10(folder, "train")
        message = str(info.value)
        assert "cifar10_train.npz" in message and "cifar-10-batches-py" in message
        assert "cifar-10-batches-bin" in message and "data_batch_1..5" in message and "\n" not in message


def test_incomplete_batches_folder_names_missing_files(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    _write_bin(folder, _fake_batches())
    (folder / "data_batch_5.bin").unlink()
    with pytest.raises(UserError, match="lacks data_batch_5.bin"):
        load_cifar10(tmp_path, "train")
    assert len(load_cifar10(tmp_path, "test")) == PER_BATCH


def test_truncated_bin_and_bad_labels(tmp_path):
    _write_bin(tmp_path / "cifar-10-batches-bin", _fake_batches())
    path = tmp_path / "cifar-10-batches-bin" / "test_batch.bin"
    raw = path.read_bytes()
    path.write_bytes(raw[:-100])
    with pytest.raises(UserError, match="test_batch.bin.*3073"):
        load_cifar10(tmp_path, "test")
    path.write_bytes(bytes([10]) + raw[1:])
    with pytest.raises(UserError, match="0..9"):
        load_cifar10(tmp_path, "test")


@pytest.mark.parametrize(
    "arrays, problem",
    [
        (dict(x=np.zeros((2, 32, 32, 3), np.uint8)), "'x' and 'y'"),
        (dict(x=np.zeros((2, 3, 32, 32), np.uint8), y=np.zeros(2, np.int64)), r"\(N, 32, 32, 3\)"),
        (dict(x=np.zeros((2, 32, 32, 3), np.float32), y=np.zeros(2, np.int64)), "uint8"),
        (dict(x=np.zeros((2, 32, 32, 3), np.uint8), y=np.zeros(3, np.int64)), "labels"),
        (dict(x=np.zeros((2, 32, 32, 3), np.uint8), y=np.array([0, None])), "npz"),
    ],
)
def test_malformed_npz(tmp_path, arrays, problem):
    np.savez(tmp_path / "cifar10_test.npz", **arrays)
    with pytest.raises(UserError, match=problem):
        load_cifar10(tmp_path, "test")


def test_not_a_zip_npz(tmp_path):
    (tmp_path / "cifar10_test.npz").write_bytes(b"garbage")
    with pytest.raises(UserError, match="cifar10_test.npz"):
        load_cifar10(tmp_path, "test")


@pytest.mark.shared_data
def test_real_cifar10_test_set(shared_data):
    data = load_cifar10(shared_data, "test")
    assert data.images.shape == (10_000, 3, 32, 32) and data.images.is_contiguous()
    assert torch.equal(torch.bincount(data.labels, minlength=10), torch.full((10,), 1000))
    mean = data.images.double().mean(dim=(0, 2, 3)) / 255
    assert torch.allclose(mean, torch.tensor([0.4942, 0.4851, 0.4504], dtype=torch.float64), atol=1e-3)
