import pytest
import torch

from deepshrink.data import ImageDataset
from deepshrink.errors import UserError


def _make(**overrides):
    fields = dict(
        name="toy",
        images=torch.arange(6 * 2 * 3 * 3, dtype=torch.int64).to(torch.uint8).reshape(6, 2, 3, 3),
        labels=torch.tensor([0, 1, 2, 0, 1, 2]),
        classes=("a", "b", "c"),
        mean=(0.5, 0.5),
        std=(0.25, 0.25),
    )
    return ImageDataset(**{**fields, **overrides})


def test_properties_and_subset():
    data = _make()
    assert (len(data), data.num_classes, data.image_shape) == (6, 3, (2, 3, 3))
    first = data.subset(4)
    assert len(first) == 4 and torch.equal(first.images, data.images[:4]) and first.classes == data.classes
    picked = data.subset(torch.tensor([5, 0]))
    assert torch.equal(picked.labels, torch.tensor([2, 0])) and torch.equal(picked.images[0], data.images[5])
    with pytest.raises(UserError, match="cannot take the first 7 of 6 images"):
        data.subset(7)
    with pytest.raises(UserError, match=r"subset indices must lie in \[0, 6\)"):
        data.subset(torch.tensor([6]))
    with pytest.raises(UserError, match=r"subset indices must lie in \[0, 6\)"):
        data.subset(torch.tensor([-1]))
    assert len(data.subset(6)) == 6 and len(data.subset(0)) == 0  # both ends are allowed


def test_non_contiguous_images_are_made_contiguous():
    images = torch.zeros(6, 3, 3, 2, dtype=torch.uint8).permute(0, 3, 1, 2)
    assert _make(images=images).images.is_contiguous()


@pytest.mark.parametrize(
    "overrides, problem",
    [
        (dict(images=torch.zeros(6, 2, 3, 3)), "images must be a uint8 tensor"),
        (dict(images=torch.zeros(6, 3, 3, dtype=torch.uint8)), r"images must be .* \(N, C, H, W\)"),
        (dict(labels=torch.tensor([0, 1, 2, 0, 1, 2], dtype=torch.int32)), "labels must be an int64 tensor"),
        (dict(labels=torch.tensor([0, 1, 2, 0, 1])), r"labels must be an int64 tensor of shape \(6,\)"),
        (dict(labels=torch.tensor([0, 1, 2, 0, 1, 3])), r"labels must lie in \[0, 3\), got 0..3"),
        (dict(labels=torch.tensor([0, 1, 2, 0, 1, -1])), r"labels must lie in \[0, 3\), got -1..2"),
        (dict(classes=()), "at least one class"),
        (dict(mean=(0.5,)), "mean and std need 2 values each"),
        (dict(std=(0.25, 0.0)), "std > 0"),
    ],
)
def test_validation(overrides, problem):
    with pytest.raises(UserError, match=problem):
        _make(**overrides)
