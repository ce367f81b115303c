"""vit-tiny: explicit attention against torch's fused attention, layout, validation."""

import pytest
import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from deepshrink.errors import UserError
from deepshrink.models import build_model, make_spec
from deepshrink.models.zoo import MultiHeadSelfAttention


def test_attention_matches_sdpa_oracle():
    torch.manual_seed(0)
    attn = MultiHeadSelfAttention(dim=24, heads=4)
    x = torch.randn(2, 7, 24)

    def heads(t):
        return t.reshape(2, 7, 4, 6).transpose(1, 2)

    q, k, v = heads(attn.q_proj(x)), heads(attn.k_proj(x)), heads(attn.v_proj(x))
    expected = attn.out_proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(2, 7, 24))
    torch.testing.assert_close(attn(x), expected)


def test_layout():
    model = build_model(make_spec("vit-tiny"))
    assert not any(isinstance(m, nn.MultiheadAttention) for m in model.modules())
    assert isinstance(model.patch_embed, nn.Conv2d)
    assert model.patch_embed.kernel_size == (4, 4) and model.patch_embed.stride == (4, 4)
    assert model.cls_token.shape == (1, 1, 128) and model.pos_embed.shape == (1, 65, 128)
    assert len(model.blocks) == 6
    block = model.blocks[5]
    assert isinstance(block.norm1, nn.LayerNorm) and isinstance(block.norm2, nn.LayerNorm)
    for proj in (block.attn.q_proj, block.attn.k_proj, block.attn.v_proj, block.attn.out_proj):
        assert isinstance(proj, nn.Linear) and (proj.in_features, proj.out_features) == (128, 128)
    assert (block.mlp.fc1.out_features, block.mlp.fc2.in_features) == (256, 256)
    assert isinstance(model.norm, nn.LayerNorm) and model.head.in_features == 128


def test_options_and_cls_token_readout():
    torch.manual_seed(0)
    model = build_model(make_spec("vit-tiny", in_channels=1, image_size=16, patch_size=8, dim=32,
                                  depth=2, heads=2, mlp_dim=48, num_classes=3)).eval()
    assert model.pos_embed.shape == (1, 5, 32)
    x = torch.randn(2, 1, 16, 16)
    traced = torch.fx.symbolic_trace(model)
    assert torch.equal(traced(x), model(x))
    tokens = model.patch_embed(x).flatten(2).transpose(1, 2)
    tokens = torch.cat([model.cls_token.expand(2, -1, -1), tokens], 1) + model.pos_embed
    torch.testing.assert_close(model(x), model.head(model.norm(model.blocks(tokens))[:, 0]))


def test_validation():
    with pytest.raises(UserError, match="divisible by patch_size"):
        build_model(make_spec("vit-tiny", image_size=30))
    with pytest.raises(UserError, match="divisible by heads"):
        build_model(make_spec("vit-tiny", dim=130))
    with pytest.raises(ValueError, match="divisible by heads"):
        MultiHeadSelfAttention(10, 3)
