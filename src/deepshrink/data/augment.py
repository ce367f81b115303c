"""Batch-wise training augmentation: tensor ops on whole (B, C, H, W) batches of any dtype.

Random numbers come only from the given ``torch.Generator`` (drawn on its device, then moved
to the batch's device), so a seeded generator reproduces the same augmentation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from deepshrink.data.dataset import Augment


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Zero-pad ``x`` (B, C, H, W) by ``padding`` pixels on each side, then take a random H x W
    window per image; the row and column offsets are uniform in [0, 2 * padding]."""
    if padding == 0:
        return x
    b, c, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    offsets = torch.randint(0, 2 * padding + 1, (2, b), generator=generator, device=generator.device)
    offsets = offsets.to(x.device)
    rows = offsets[0, :, None] + torch.arange(h, device=x.device)  # (B, H)
    cols = offsets[1, :, None] + torch.arange(w, device=x.device)  # (B, W)
    batch = torch.arange(b, device=x.device)[:, None, None, None]
    channel = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]


def random_hflip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Flip each image of ``x`` (B, C, H, W) left-right with probability 0.5."""
    flip = torch.rand(x.shape[0], generator=generator, device=generator.device) < 0.5
    return torch.where(flip.to(x.device)[:, None, None, None], x.flip(-1), x)


def apply_augment(x: torch.Tensor, augment: Augment, generator: torch.Generator) -> torch.Tensor:
    """Apply ``augment`` to the batch ``x`` (B, C, H, W): random crop first, then flip."""
    x = random_crop(x, augment.crop_padding, generator)
    return random_hflip(x, generator) if augment.hflip else x
