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
    with pytest.raises(UserError):
        data.subset(7)
    with pytest.raises(UserError):
        data.subset(torch.tensor([6]))


def test_non_contiguous_images_are_made_contiguous():
    images = torch.zeros(6, 3, 3, 2, dtype=torch.uint8).permute(0, 3, 1, 2)
    assert _make(images=images).images.is_contiguous()


@pytest.mark.parametrize(
    "overrides",
    [
        dict(images=torch.zeros(6, 2, 3, 3)),
        dict(images=torch.zeros(6, 3, 3, dtype=torch.uint8)),
        dict(labels=torch.tensor([0, 1, 2, 0, 1, 2], dtype=torch.int32)),
        dict(labels=torch.tensor([0, 1, 2, 0, 1])),
        dict(labels=torch.tensor([0, 1, 2, 0, 1, 3])),
        dict(labels=torch.tensor([0, 1, 2, 0, 1, -1])),
        dict(mean=(0.5,)),
        dict(std=(0.25, 0.0)),
    ],
)
def test_validation(overrides):
    with pytest.raises(UserError):
        _make(**overrides)
