import pytest
import torch

from deepshrink.data.synthetic import make_synthetic
from deepshrink.errors import UserError


def test_shapes_and_class_balance():
    train, test = make_synthetic("train"), make_synthetic("test")
    assert train.images.shape == (256, 3, 16, 16) and test.images.shape == (128, 3, 16, 16)
    assert train.images.dtype == torch.uint8 and train.num_classes == 4
    assert torch.equal(torch.bincount(train.labels), torch.full((4,), 64))
    odd = make_synthetic("train", num_classes=3, num_images=10, channels=1, size=8)
    assert odd.images.shape == (10, 1, 8, 8) and torch.bincount(odd.labels).tolist() == [4, 3, 3]


def test_deterministic_and_seeded():
    a, b = make_synthetic("train", seed=5), make_synthetic("train", seed=5)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels) and a.mean == b.mean
    assert not torch.equal(a.images, make_synthetic("train", seed=6).images)
    test = make_synthetic("test", seed=5, num_images=256)
    assert not torch.equal(a.images, test.images)  # different noise


def test_stats_match_pixels():
    data = make_synthetic("train", num_images=1024)
    pixels = data.images.double() / 255
    # measured within 2e-4 (rounding and the rare clipping); 0.01 would admit e.g. half the noise std
    assert torch.allclose(pixels.mean(dim=(0, 2, 3)), torch.tensor(data.mean, dtype=torch.float64), atol=0.002)
    assert torch.allclose(pixels.std(dim=(0, 2, 3)), torch.tensor(data.std, dtype=torch.float64), atol=0.002)


def test_learnable_and_train_test_share_templates():
    train, test = make_synthetic("train"), make_synthetic("test")
    centroids = torch.stack([train.images[train.labels == k].double().mean(0) for k in range(4)])
    distances = torch.cdist(test.images.double().flatten(1), centroids.flatten(1))
    assert (distances.argmin(1) == test.labels).double().mean() > 0.95


@pytest.mark.parametrize("kwargs", [dict(num_classes=1), dict(num_images=0), dict(channels=0), dict(size=0)])
def test_rejects_bad_arguments(kwargs):
    with pytest.raises(UserError, match="synthetic: need num_classes >= 2 and num_images, channels, size >= 1"):
        make_synthetic("train", **kwargs)
