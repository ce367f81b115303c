"""A small Vision Transformer (Dosovitskiy et al. 2021) for 32x32 images.

Attention is written out with separate ``q_proj``/``k_proj``/``v_proj``/``out_proj`` Linear
layers so pruning and quantization see ordinary ``nn.Linear`` modules.

Mixed precision: under ``torch.autocast`` (float16/bfloat16) the softmax and every LayerNorm
still compute in float32 and return float32 (the next Linear or matmul casts to the autocast
dtype itself). For a float32 model outside autocast the casts are no-ops.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from deepshrink.models.registry import register_model
from deepshrink.models.zoo._common import check_positive

__all__ = ["MLP", "MultiHeadSelfAttention", "TransformerBlock", "VisionTransformer"]


class MultiHeadSelfAttention(nn.Module):
    """(N, T, dim) -> (N, T, dim): per head softmax(Q K^T / sqrt(d_k)) V with d_k = dim / heads,
    heads concatenated and mixed by ``out_proj``. Q, K, V are the ``q_proj``/``k_proj``/``v_proj``
    outputs, head h taking features h*d_k .. (h+1)*d_k."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim ({dim}) must be divisible by heads ({heads})")
        self.heads = heads
        self.head_dim = dim // heads
        self.scale = 1.0 / math.sqrt(self.head_dim)
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        """(N, T, dim) -> (N, heads, T, d_k)."""
        return x.unflatten(-1, (self.heads, self.head_dim)).transpose(1, 2)

    def attention_weights(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """(N, heads, T, d_k) twice -> float32 (N, heads, T, T), each row summing to 1.

        The softmax runs in float32 even under autocast: in float16/bfloat16 the exponentials
        of large scores overflow or round, and rows no longer sum to 1 (CPU autocast would keep
        the half dtype; CUDA autocast upcasts softmax itself).
        """
        scores = torch.matmul(q, k.transpose(-2, -1)) * self.scale
        return torch.softmax(scores.float(), dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self._split(self.q_proj(x)), self._split(self.k_proj(x)), self._split(self.v_proj(x))
        weights = self.attention_weights(q, k).to(v.dtype)  # back to the values' dtype
        out = torch.matmul(weights, v).transpose(1, 2).flatten(2)
        return self.drop(self.out_proj(out))


class MLP(nn.Module):
    """(N, T, dim) -> fc1 (N, T, hidden) -> GELU -> fc2 -> (N, T, dim)."""

    def __init__(self, dim: int, hidden: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class TransformerBlock(nn.Module):
    """Pre-norm block, (N, T, dim) -> (N, T, dim): x + attn(norm1(x)), then + mlp(norm2(.))."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = MultiHeadSelfAttention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, mlp_dim, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # LayerNorm in float32 even under autocast (a token's mean and variance lose precision
        # in half precision); the output stays float32 and the Linear layers cast it down.
        x = x + self.attn(self.norm1(x.float()))
        return x + self.mlp(self.norm2(x.float()))


@register_model("vit-tiny", description="tiny Vision Transformer (4x4 patches, 6 pre-norm blocks, dim 128)",
                default_input=(3, 32, 32))
class VisionTransformer(nn.Module):
    """(N, C, S, S) -> patch_embed (N, dim, S/p, S/p) -> tokens (N, P, dim), P = (S/p)^2
    -> prepend cls token, add position embedding (N, P+1, dim) -> ``depth`` blocks -> norm
    -> head on the cls token -> (N, num_classes)."""

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        image_size: int = 32,
        patch_size: int = 4,
        dim: int = 128,
        depth: int = 6,
        heads: int = 4,
        mlp_dim: int = 256,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        check_positive(num_classes=num_classes, in_channels=in_channels, image_size=image_size,
                       patch_size=patch_size, dim=dim, depth=depth, heads=heads, mlp_dim=mlp_dim)
        if image_size % patch_size:
            raise ValueError(f"image_size ({image_size}) must be divisible by patch_size ({patch_size})")
        if dim % heads:
            raise ValueError(f"dim ({dim}) must be divisible by heads ({heads})")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        tokens = (image_size // patch_size) ** 2 + 1
        self.patch_embed = nn.Conv2d(in_channels, dim, patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, tokens, dim))
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.Sequential(*[TransformerBlock(dim, heads, mlp_dim, dropout) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        x = self.drop(torch.cat([cls, x], dim=1) + self.pos_embed)
        x = self.norm(self.blocks(x).float())  # float32 LayerNorm, as in the blocks
        return self.head(x[:, 0])
