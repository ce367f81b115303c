"""Batch iteration over an in-memory ImageDataset: shuffle, DDP sharding, augmentation, normalisation."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch

from deepshrink.data.augment import apply_augment
from deepshrink.data.dataset import Augment, ImageDataset
from deepshrink.errors import UserError

_MASK64 = (1 << 64) - 1


def _seed(*parts: int) -> int:
    """Mix integers into one 64-bit seed: ``_seed(seed, epoch) == seed * 1_000_003 + epoch``."""
    value = 0
    for part in parts:
        value = (value * 1_000_003 + part) & _MASK64
    return value


class BatchLoader:
    """Iterates ``(inputs, labels)`` over an :class:`ImageDataset`.

    ``inputs``: float32 (B, C, H, W), ``(pixel / 255 - mean) / std``; ``labels``: int64 (B,).
    Both are on ``device``. The order and augmentation of epoch ``e`` (see :meth:`set_epoch`) are
    a pure function of ``(seed, e)`` (and ``rank`` for augmentation); the global RNG is never used.

    With ``world_size > 1`` every rank gets a strided shard of the (shuffled) index permutation
    and the same number of batches. As in ``torch.utils.data.DistributedSampler``, the shards are
    disjoint except that the permutation is padded by wrapping around to a multiple of
    ``world_size``; with ``drop_last`` its tail is dropped instead.
    ``drop_last`` also drops a final batch smaller than ``batch_size`` (which is per rank).
    ``num_samples`` is the number of images one rank sees per epoch. ``even_shards=False`` (for
    evaluation) skips the padding: every image is seen exactly once, shards may differ by one.
    """

    def __init__(
        self,
        dataset: ImageDataset,
        batch_size: int,
        *,
        shuffle: bool = False,
        augment: Augment | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        seed: int = 0,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
        device: str | torch.device = "cpu",
        even_shards: bool = True,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise UserError(f"batch size must be an integer >= 1, got {batch_size!r}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise UserError(f"rank must lie in [0, world_size), got rank {rank} of world_size {world_size}")
        channels = dataset.image_shape[0]
        mean = dataset.mean if mean is None else tuple(mean)
        std = dataset.std if std is None else tuple(std)
        if len(mean) != channels or len(std) != channels or min(std) <= 0:
            raise UserError(f"{dataset.name}: mean and std need {channels} values each, std > 0")
        self.dataset, self.batch_size, self.shuffle, self.augment = dataset, batch_size, shuffle, augment
        self.seed, self.drop_last, self.rank, self.world_size = seed, drop_last, rank, world_size
        self.device = torch.device(device)
        self.epoch = 0
        # uint8 data moves to the device once; batches are gathered there.
        self._images = dataset.images.to(self.device)
        self._labels = dataset.labels.to(self.device)
        self._mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self._std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self.even_shards = even_shards
        n = len(dataset)
        if not even_shards:  # evaluation: every image exactly once over all ranks
            self.num_samples = len(range(rank, n, world_size))
        else:
            self.num_samples = n // world_size if drop_last else math.ceil(n / world_size)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order and augmentation the next iteration produces."""
        self.epoch = epoch

    def __len__(self) -> int:
        """Number of batches per epoch (on this rank)."""
        if self.drop_last:
            return self.num_samples // self.batch_size
        return math.ceil(self.num_samples / self.batch_size)

    def _shard(self) -> torch.Tensor:
        """This rank's dataset indices for the current epoch, int64 (num_samples,)."""
        n = len(self.dataset)
        if self.shuffle:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(_seed(self.seed, self.epoch)))
        else:
            order = torch.arange(n)
        if not self.even_shards:
            return order[self.rank :: self.world_size]
        total = self.num_samples * self.world_size
        if total > n:
            order = order.repeat(math.ceil(total / n))
        return order[self.rank : total : self.world_size]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        shard = self._shard().to(self.device)
        generator = torch.Generator().manual_seed(_seed(self.seed, self.epoch, self.rank + 1))
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            index = shard[start : start + self.batch_size]
            images = self._images.index_select(0, index)
            if self.augment is not None:
                images = apply_augment(images, self.augment, generator)
            inputs = images.float().div_(255).sub_(self._mean).div_(self._std)
            yield inputs, self._labels.index_select(0, index)
