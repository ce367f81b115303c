import gzip
import struct

import numpy as np
import pytest
import torch

from deepshrink.data import load_dataset
from deepshrink.data.mnist import load_mnist
from deepshrink.errors import UserError


def _idx(array, magic):
    return struct.pack(f">I{array.ndim}I", magic, *array.shape) + array.astype(np.uint8).tobytes()


def _write(folder, prefix, images, labels, *, gz=False, dotted=False, image_magic=2051, label_magic=2049):
    folder.mkdir(parents=True, exist_ok=True)
    for kind, array, magic in (("images-idx3", images, image_magic), ("labels-idx1", labels, label_magic)):
        name = f"{prefix}-{kind}-ubyte".replace("-idx", ".idx" if dotted else "-idx")
        raw = _idx(array, magic)
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(raw))
        else:
            (folder / name).write_bytes(raw)


def _sample(n, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 5, 4), dtype=np.uint8), rng.integers(0, 10, n, dtype=np.uint8)


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dotted", [False, True])
def test_round_trip(tmp_path, gz, dotted):
    train, test = _sample(7, 0), _sample(3, 1)
    _write(tmp_path, "train", *train, gz=gz, dotted=dotted)
    _write(tmp_path, "t10k", *test, gz=gz, dotted=dotted)
    for split, (images, labels) in (("train", train), ("test", test)):
        data = load_mnist(tmp_path, split)
        assert torch.equal(data.images, torch.from_numpy(images).unsqueeze(1))
        assert torch.equal(data.labels, torch.from_numpy(labels).long())
        assert data.mean == (0.1307,) and data.std == (0.3081,) and data.augment.crop_padding == 2
    assert len(load_dataset("mnist", "test", tmp_path)) == 3


@pytest.mark.parametrize(
    "kwargs, problem",
    [
        (dict(image_magic=2049), "magic number 2051"),
        (dict(label_magic=2051), "magic number 2049"),
        (dict(labels=np.zeros(6, np.uint8)), "7 images .* but 6 labels"),
        (dict(labels=np.full(7, 10, np.uint8)), "0..9"),
    ],
)
def test_malformed_files(tmp_path, kwargs, problem):
    images, labels = _sample(7, 0)
    _write(tmp_path, "t10k", kwargs.pop("images", images), kwargs.pop("labels", labels), **kwargs)
    with pytest.raises(UserError, match=problem):
        load_mnist(tmp_path, "test")


def test_truncated_and_bad_gzip(tmp_path):
    _write(tmp_path, "t10k", *_sample(7, 0))
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(UserError, match="header says"):
        load_mnist(tmp_path, "test")
    path.unlink()
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(b"not gzip")
    with pytest.raises(UserError, match="cannot read"):
        load_mnist(tmp_path, "test")


def test_missing_files_name_the_layout(tmp_path):
    for folder in (tmp_path / "absent", tmp_path):
        with pytest.raises(UserError, match="train-images-idx3-ubyte.*t10k-labels-idx1-ubyte"):
            load_mnist(folder, "train")
