"""Classic image filters as convolution kernels, and which of them a model's first-layer kernels resemble.

Filters act on (N, C, H, W) float tensors channel by channel (a depthwise convolution) and
keep the spatial size: borders are padded by replicating the edge pixels, so a constant
image gives zero response everywhere. Kernels are applied as ``F.conv2d`` does
(cross-correlation): Sobel Gx is positive where intensity grows to the right (+x, along W),
Gy where it grows downwards (+y, along H).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from deepshrink.errors import UserError

__all__ = ["KERNELS", "KernelMatch", "average_pool", "filter2d", "gradient_magnitude", "laplacian",
           "match_first_layer", "max_pool", "sobel"]

KERNELS: dict[str, torch.Tensor] = {
    "sobel_x": torch.tensor([[-1., 0., 1.], [-2., 0., 2.], [-1., 0., 1.]]),
    "sobel_y": torch.tensor([[-1., -2., -1.], [0., 0., 0.], [1., 2., 1.]]),
    "laplacian4": torch.tensor([[0., 1., 0.], [1., -4., 1.], [0., 1., 0.]]),
    "laplacian8": torch.tensor([[1., 1., 1.], [1., -8., 1.], [1., 1., 1.]]),
    "average": torch.full((3, 3), 1.0 / 9.0),
}


def filter2d(images: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Correlate every channel of ``images`` (N, C, H, W) with the odd-sized ``kernel`` (k, k);
    same-size output, replicate-padded borders."""
    channels = images.shape[1]
    pad = kernel.shape[-1] // 2
    weight = kernel.to(images).expand(channels, 1, *kernel.shape)
    return F.conv2d(F.pad(images, (pad, pad, pad, pad), mode="replicate"), weight, groups=channels)


def sobel(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(Gx, Gy), each (N, C, H, W)."""
    return filter2d(images, KERNELS["sobel_x"]), filter2d(images, KERNELS["sobel_y"])


def gradient_magnitude(images: torch.Tensor) -> torch.Tensor:
    """sqrt(Gx² + Gy²), (N, C, H, W)."""
    gx, gy = sobel(images)
    return torch.sqrt(gx**2 + gy**2)


def laplacian(images: torch.Tensor, neighbours: int = 4) -> torch.Tensor:
    """The 4- or 8-neighbour Laplacian (sum of neighbours minus that many times the centre)."""
    if neighbours not in (4, 8):
        raise UserError(f"the Laplacian has 4 or 8 neighbours, not {neighbours}")
    return filter2d(images, KERNELS[f"laplacian{neighbours}"])


def max_pool(images: torch.Tensor, size: int = 2) -> torch.Tensor:
    """Maximum over non-overlapping ``size`` x ``size`` windows: (N, C, H/size, W/size)."""
    return F.max_pool2d(images, size)


def average_pool(images: torch.Tensor, size: int = 2) -> torch.Tensor:
    """Mean over non-overlapping ``size`` x ``size`` windows, as a convolution with a uniform kernel
    of stride ``size``: (N, C, H/size, W/size)."""
    channels = images.shape[1]
    weight = images.new_full((channels, 1, size, size), 1.0 / size**2)
    return F.conv2d(images, weight, stride=size, groups=channels)


@dataclass(frozen=True)
class KernelMatch:
    """The reference filter most like output channel ``channel``'s kernel.

    ``similarity`` is the cosine similarity in [-1, 1] (negative: the inverted filter);
    ``scores`` holds it for every filter in :data:`KERNELS`.
    """

    channel: int
    filter: str
    similarity: float
    scores: dict[str, float]


def match_first_layer(model: nn.Module) -> list[KernelMatch]:
    """For each kernel of ``model``'s first ``nn.Conv2d``: the closest filter of :data:`KERNELS`.

    A kernel (C_out, C_in, k, k) is averaged over its input channels and, when k > 3,
    average-pooled to 3 x 3; the best filter has the largest |cosine similarity|.
    """
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if conv is None:
        raise UserError("the model has no convolution layer to compare with image filters")
    if min(conv.kernel_size) < 3:
        raise UserError(f"the first convolution has {conv.kernel_size} kernels; filters need at least 3x3")
    kernels = F.adaptive_avg_pool2d(conv.weight.detach().float().mean(dim=1), 3).flatten(1)
    names = list(KERNELS)
    references = torch.stack([KERNELS[name].flatten() for name in names])
    cosine = F.cosine_similarity(kernels[:, None, :], references[None, :, :], dim=-1)
    matches = []
    for channel, row in enumerate(cosine.tolist()):
        best = max(range(len(names)), key=lambda i: abs(row[i]))
        matches.append(KernelMatch(channel, names[best], row[best], dict(zip(names, row))))
    return matches
