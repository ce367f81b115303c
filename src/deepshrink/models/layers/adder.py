"""Adder convolution of AdderNet (Chen et al. 2020, "AdderNet: Do We Really Need
Multiplications in Deep Learning?").

Each output is the negative L1 distance between a k x k x C_in input window and a filter,

    Y[n, o, p] = -Σ_j |X_col[n, j, p] - W[o, j]|        (j over the C_in·k·k window elements)

so the forward pass needs subtractions, absolute values and additions only. Training uses
the paper's gradients instead of the true (sign) ones:

    ∂Y/∂W = X - W            (full precision, eq. 5)
    ∂Y/∂X = HT(W - X)        (HardTanh: clipped to [-1, 1], eq. 6)

Memory: only X and W are kept for the backward pass. Both passes unfold a few images at a
time, so the unfolded windows (forward) and the (images, C_out, C_in·k·k, positions)
HardTanh tensor (backward) each stay under ``chunk_bytes``; the backward pass also splits the
output channels when a single image would not fit.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable
from torch.nn.modules.utils import _pair

__all__ = ["AdderConv2d", "adder2d", "DEFAULT_CHUNK_BYTES"]

DEFAULT_CHUNK_BYTES = 64 * 2**20


def _chunks(total: int, bytes_each: int, budget: int) -> list[tuple[int, int]]:
    """[start, stop) ranges over ``total`` items, as many per range as fit in ``budget`` bytes (>= 1)."""
    step = max(1, budget // max(1, bytes_each))
    return [(start, min(start + step, total)) for start in range(0, total, step)]


class _Adder2dFunction(torch.autograd.Function):
    """Forward Y = -Σ|X_col - W|; backward with the full-precision / HardTanh gradients."""

    @staticmethod
    def forward(ctx, x, weight, stride, padding, chunk_bytes):
        out_channels, _, kh, kw = weight.shape
        n, _, height, width = x.shape
        out_h = (height + 2 * padding[0] - kh) // stride[0] + 1
        out_w = (width + 2 * padding[1] - kw) // stride[1] + 1
        unfold = dict(kernel_size=(kh, kw), padding=padding, stride=stride)
        w_rows = weight.reshape(out_channels, -1)  # (O, J)
        out = x.new_empty(n, out_h * out_w, out_channels)
        cols_bytes = w_rows.shape[1] * out_h * out_w * x.element_size()
        for start, stop in _chunks(n, cols_bytes, chunk_bytes):
            cols = F.unfold(x[start:stop], **unfold).transpose(1, 2)  # (n, P, J)
            out[start:stop] = torch.cdist(cols.reshape(-1, cols.shape[-1]), w_rows, p=1).view_as(out[start:stop])
        ctx.save_for_backward(x, weight)
        ctx.unfold, ctx.chunk_bytes = unfold, chunk_bytes
        return out.neg_().view(n, out_h, out_w, out_channels).permute(0, 3, 1, 2)  # channels_last

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        need_x, need_w = ctx.needs_input_grad[:2]
        out_channels = weight.shape[0]
        w_rows = weight.reshape(out_channels, -1)  # (O, J)
        grad = grad_out.reshape(grad_out.shape[0], out_channels, -1)  # (N, O, P)
        grad_x = torch.empty_like(x) if need_x else None
        grad_w = torch.zeros_like(w_rows) if need_w else None
        per_image = out_channels * w_rows.shape[1] * grad.shape[2] * x.element_size()
        for start, stop in _chunks(x.shape[0], per_image, ctx.chunk_bytes):
            cols = F.unfold(x[start:stop], **ctx.unfold)  # (n, J, P)
            g = grad[start:stop]
            if need_w:  # Σ_{n,p} g·(X - W) = Σ g·X - W·Σ g
                grad_w += torch.einsum("nop,njp->oj", g, cols) - w_rows * g.sum((0, 2)).unsqueeze(1)
            if need_x:
                grad_cols = _hardtanh_grad(cols, w_rows, g, ctx.chunk_bytes)
                grad_x[start:stop] = F.fold(grad_cols, x.shape[2:], **ctx.unfold)
        return grad_x, grad_w.view_as(weight) if need_w else None, None, None, None


def _hardtanh_grad(cols: torch.Tensor, w_rows: torch.Tensor, g: torch.Tensor, chunk_bytes: int) -> torch.Tensor:
    """Σ_o g[n, o, p]·HT(W[o, j] - X_col[n, j, p]) -> (n, J, P), a block of output channels at a time."""
    n, window, positions = cols.shape
    grad_cols = torch.zeros_like(cols)
    block_bytes = n * window * positions * cols.element_size()
    for start, stop in _chunks(w_rows.shape[0], block_bytes, chunk_bytes):
        clipped = (w_rows[None, start:stop, :, None] - cols.unsqueeze(1)).clamp_(-1, 1)  # (n, o, J, P)
        grad_cols += clipped.mul_(g[:, start:stop].unsqueeze(2)).sum(1)
    return grad_cols


def adder2d(x: torch.Tensor, weight: torch.Tensor, stride=1, padding=0,
            chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> torch.Tensor:
    """Adder convolution: x (N, C_in, H, W), weight (C_out, C_in, kh, kw) -> (N, C_out, H_out, W_out),
    sizes as for ``F.conv2d`` with the same stride and zero padding."""
    return _Adder2dFunction.apply(x, weight, _pair(stride), _pair(padding), chunk_bytes)


torch.fx.wrap("adder2d")  # a leaf call when models are traced with torch.fx


class AdderConv2d(nn.Module):
    """Drop-in for ``nn.Conv2d`` (no groups or dilation) computing :func:`adder2d`, plus an optional bias.

    Weights start as standard normal, as in the authors' code: they are compared with
    (batch-normalised) inputs, not multiplied by them. Follow the layer with BatchNorm: its
    outputs are all <= 0 and, for small weights, have a far larger variance than a
    convolution's.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 bias: bool = True, *, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = _pair(kernel_size), _pair(stride), _pair(padding)
        self.chunk_bytes = chunk_bytes
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, *self.kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = adder2d(x, self.weight, self.stride, self.padding, self.chunk_bytes)
        return out if self.bias is None else out + self.bias.view(1, -1, 1, 1)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, bias={self.bias is not None}")
