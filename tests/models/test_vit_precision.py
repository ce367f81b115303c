"""vit-tiny under autocast: softmax and LayerNorm compute in float32; float32 runs unchanged."""

import pytest
import torch
from torch import nn

from deepshrink.models import build_model, make_spec

HALF = [torch.bfloat16, torch.float16]


def _small_vit() -> nn.Module:
    torch.manual_seed(0)
    return build_model(make_spec("vit-tiny", in_channels=1, image_size=16, patch_size=4, dim=32,
                                 depth=2, heads=2, mlp_dim=48, num_classes=3)).eval()


def _norm_dtypes(module: nn.Module, run) -> dict[str, tuple[torch.dtype, torch.dtype]]:
    """(input dtype, output dtype) of every LayerNorm in ``module`` while ``run()`` runs."""
    seen = {}
    handles = [norm.register_forward_hook(lambda _, args, out, name=name: seen.__setitem__(name, (args[0].dtype, out.dtype)))
               for name, norm in module.named_modules() if isinstance(norm, nn.LayerNorm)]
    try:
        run()
    finally:
        for handle in handles:
            handle.remove()
    return seen


@pytest.mark.parametrize("dtype", HALF)
def test_layer_norms_run_in_float32_under_autocast(dtype):
    model = _small_vit()
    x = torch.randn(2, 1, 16, 16)
    outputs = {}

    def forward():
        with torch.autocast("cpu", dtype=dtype):
            outputs["model"] = model(x)
            outputs["block"] = model.blocks[0](torch.randn(2, 17, 32).to(dtype))  # a half-precision residual stream

    seen = _norm_dtypes(model, forward)
    assert outputs["model"].dtype == dtype  # autocast was on: the head Linear ran in half precision
    assert len(seen) == 2 * 2 + 1
    assert all(dtypes == (torch.float32, torch.float32) for dtypes in seen.values()), seen
    assert outputs["block"].dtype == dtype  # the residual stream keeps its dtype


@pytest.mark.parametrize("dtype", HALF)
def test_attention_softmax_runs_in_float32_under_autocast(dtype):
    attn = _small_vit().blocks[0].attn
    generator = torch.Generator().manual_seed(1)
    q, k = (4 * torch.randn(2, 1, 2, 17, 16, generator=generator)).to(dtype)  # (N, heads, T, d_k) each
    with torch.autocast("cpu", dtype=dtype):
        weights = attn.attention_weights(q, k)
    assert weights.dtype == torch.float32
    torch.testing.assert_close(weights.sum(-1), torch.ones(1, 2, 17), rtol=0, atol=1e-6)  # half: ~1e-3 off
    scores = torch.matmul(q.double(), k.double().transpose(-2, -1)) * attn.scale
    # half-precision scores: off by at most ~0.02 (bfloat16) / ~0.001 (float16) here; a scale of
    # 0.2 instead of 1/sqrt(16) = 0.25 would be off by more than 0.05 (0.1 admitted it)
    atol = 0.04 if dtype == torch.bfloat16 else 0.005
    torch.testing.assert_close(weights.double(), torch.softmax(scores, -1), rtol=0, atol=atol)


def test_float32_forward_is_the_plain_pre_norm_block():
    model = _small_vit()
    block = model.blocks[1]
    x = torch.randn(2, 17, 32)
    h = x + block.attn(block.norm1(x))
    assert torch.equal(block(x), h + block.mlp(block.norm2(h)))
    assert model(torch.randn(2, 1, 16, 16)).dtype == torch.float32
