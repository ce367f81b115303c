import pytest
import torch
import torch.nn.functional as F

from deepshrink.data import Augment, random_crop, random_hflip
from deepshrink.data.augment import apply_augment
from deepshrink.errors import UserError


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
@pytest.mark.parametrize("padding", [1, 3])
def test_crop_is_a_window_of_the_zero_padded_image(dtype, padding):
    b, c, h, w = 200, 2, 5, 7
    x = torch.randint(1, 256, (b, c, h, w), generator=torch.Generator().manual_seed(1)).to(dtype)
    out = random_crop(x, padding, torch.Generator().manual_seed(2))
    assert out.shape == x.shape and out.dtype == dtype
    padded = F.pad(x, (padding,) * 4)
    rows_seen, cols_seen = set(), set()
    for i in range(b):  # reference loop
        matches = [
            (dy, dx)
            for dy in range(2 * padding + 1)
            for dx in range(2 * padding + 1)
            if torch.equal(out[i], padded[i, :, dy : dy + h, dx : dx + w])
        ]
        assert len(matches) == 1, f"image {i} is not exactly one window"
        rows_seen.add(matches[0][0])
        cols_seen.add(matches[0][1])
    assert rows_seen == cols_seen == set(range(2 * padding + 1))


def test_crop_is_deterministic_and_zero_padding_is_identity():
    x = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8)
    a = random_crop(x, 2, torch.Generator().manual_seed(5))
    assert torch.equal(a, random_crop(x, 2, torch.Generator().manual_seed(5)))
    assert not torch.equal(a, random_crop(x, 2, torch.Generator().manual_seed(6)))
    assert torch.equal(random_crop(x, 0, torch.Generator()), x)


def test_hflip_flips_about_half_exactly():
    x = torch.randint(0, 256, (1000, 3, 4, 6), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    out = random_hflip(x, torch.Generator().manual_seed(3))
    flipped = (out == x.flip(-1)).flatten(1).all(1)
    kept = (out == x).flatten(1).all(1)
    assert torch.all(flipped ^ kept)  # every image is exactly one of the two
    assert 430 <= int(flipped.sum()) <= 570
    assert torch.equal(out, random_hflip(x, torch.Generator().manual_seed(3)))


def test_apply_augment():
    x = torch.randint(0, 256, (64, 3, 8, 8), dtype=torch.uint8)
    assert torch.equal(apply_augment(x, Augment(), torch.Generator()), x)
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    out = apply_augment(x, Augment(crop_padding=2, hflip=True), g1)
    assert torch.equal(out, random_hflip(random_crop(x, 2, g2), g2))
    assert out.dtype == torch.uint8 and out.shape == x.shape and not torch.equal(out, x)


def test_augment_rejects_negative_padding():
    with pytest.raises(UserError, match="crop_padding"):
        Augment(crop_padding=-1)
