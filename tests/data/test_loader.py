import pytest
import torch
from torch.utils.data import DistributedSampler

from deepshrink.data import Augment, BatchLoader, ImageDataset
from deepshrink.errors import UserError


def _dataset(n=37, size=4):
    """Image i has every pixel of channel c equal to 1 + (i + 50 c) % 255 (never 0); its label is i."""
    index = torch.arange(n)
    images = (1 + (index[:, None] + torch.tensor([0, 50, 100])) % 255).to(torch.uint8)
    images = images[:, :, None, None].expand(n, 3, size, size).contiguous()
    return ImageDataset("toy", images, index, tuple(map(str, range(n))), (0.2, 0.4, 0.6), (0.1, 0.2, 0.3))


def _labels(loader):
    return [labels.tolist() for _, labels in loader]


def test_every_index_once_per_epoch_and_len():
    loader = BatchLoader(_dataset(), 8, shuffle=True)
    batches = _labels(loader)
    assert len(loader) == len(batches) == 5
    assert [len(b) for b in batches] == [8, 8, 8, 8, 5]
    assert sorted(sum(batches, [])) == list(range(37))
    assert sum(batches, []) != list(range(37))  # shuffled


def test_drop_last_and_no_shuffle():
    batches = _labels(BatchLoader(_dataset(), 8, drop_last=True))
    assert batches == [list(range(i, i + 8)) for i in range(0, 32, 8)]
    assert len(BatchLoader(_dataset(), 8, drop_last=True)) == 4
    assert len(BatchLoader(_dataset(), 37)) == 1


def test_same_seed_and_epoch_reproduce_batches_without_global_rng():
    data = _dataset(size=6)
    kwargs = dict(shuffle=True, augment=Augment(crop_padding=2, hflip=True), seed=7)
    a, b = BatchLoader(data, 8, **kwargs), BatchLoader(data, 8, **kwargs)
    a.set_epoch(3)
    b.set_epoch(3)
    state = torch.get_rng_state()
    first = list(a)
    assert torch.equal(torch.get_rng_state(), state)
    assert len(first) == len(b) == 5  # the zips below compare every batch
    for (xa, ya), (xb, yb) in zip(first, b):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    b.set_epoch(4)
    assert _labels(b) != _labels(a)
    other_seed = BatchLoader(data, 8, shuffle=True, seed=8)
    assert _labels(other_seed) != _labels(BatchLoader(data, 8, shuffle=True, seed=7))
    b.set_epoch(3)  # resuming at epoch 3 gives epoch 3's batches again
    assert all(torch.equal(x, y[0]) for (x, _), y in zip(first, b))


def test_augmentation_is_applied_to_uint8_before_normalising():
    data = _dataset(n=64, size=6)
    plain = torch.cat([x for x, _ in BatchLoader(data, 16)])
    augmented = torch.cat([x for x, _ in BatchLoader(data, 16, augment=Augment(crop_padding=2))])
    zero = (-torch.tensor(data.mean) / torch.tensor(data.std)).view(1, 3, 1, 1)
    padded_pixels = torch.isclose(augmented, zero.expand_as(augmented))
    assert padded_pixels.any() and not torch.isclose(plain, zero.expand_as(plain)).any()
    kept = ~padded_pixels
    assert torch.allclose(augmented[kept], plain[kept])  # constant images: only the borders change


def test_normalisation_matches_hand_computation():
    data = _dataset()
    x, y = next(iter(BatchLoader(data, 5)))
    raw = data.images[:5].double() / 255
    mean, std = torch.tensor([0.2, 0.4, 0.6]).view(1, 3, 1, 1), torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1)
    expected = (raw - mean) / std
    assert x.dtype == torch.float32 and y.dtype == torch.int64 and x.shape == (5, 3, 4, 4)
    assert torch.allclose(x.double(), expected, atol=1e-5)
    x, _ = next(iter(BatchLoader(data, 5, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))))
    assert torch.allclose(x.double(), (raw - 0.5) / 0.5, atol=1e-5)


@pytest.mark.parametrize("n", [40, 37])
@pytest.mark.parametrize("drop_last", [False, True])
def test_ddp_shards(n, drop_last):
    data = _dataset(n)
    shards = []
    for rank in range(2):
        loader = BatchLoader(data, 4, shuffle=True, seed=3, rank=rank, world_size=2, drop_last=drop_last)
        loader.set_epoch(1)
        shards.append(sum(_labels(loader), []))
    assert len(shards[0]) == len(shards[1])
    if n == 40 or drop_last:
        assert not set(shards[0]) & set(shards[1])
    if not drop_last:
        assert set(shards[0]) | set(shards[1]) == set(range(n))
        assert len(shards[0]) == (n + 1) // 2
    else:
        assert len(shards[0]) == n // 2 // 4 * 4


@pytest.mark.parametrize("drop_last", [False, True])
def test_unshuffled_shards_match_distributed_sampler(drop_last):
    data = _dataset(37)
    for rank in range(3):
        loader = BatchLoader(data, 1, rank=rank, world_size=3, drop_last=drop_last)
        sampler = DistributedSampler(range(37), num_replicas=3, rank=rank, shuffle=False, drop_last=drop_last)
        assert sum(_labels(loader), []) == list(sampler)


@pytest.mark.parametrize(
    "kwargs, problem",
    [
        (dict(batch_size=0), "batch size must be an integer >= 1, got 0"),
        (dict(batch_size=2.5), "batch size must be an integer >= 1, got 2.5"),
        (dict(batch_size=4, rank=2, world_size=2), "got rank 2 of world_size 2"),
        (dict(batch_size=4, mean=(0.5,)), "mean and std need 3 values each"),
    ],
)
def test_rejects_bad_arguments(kwargs, problem):
    with pytest.raises(UserError, match=problem):
        BatchLoader(_dataset(), **kwargs)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_batches_equal_cpu_batches():
    data = _dataset(n=50, size=6)
    kwargs = dict(shuffle=True, augment=Augment(crop_padding=2, hflip=True), seed=1)
    cpu, cuda = BatchLoader(data, 16, **kwargs), BatchLoader(data, 16, device="cuda", **kwargs)
    for (x, y), (xc, yc) in zip(cpu, cuda):
        assert xc.is_cuda and yc.is_cuda
        assert torch.allclose(x, xc.cpu(), atol=1e-6) and torch.equal(y, yc.cpu())
