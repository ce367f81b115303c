"""Inference preparation: BatchNorm folding and channels-last keep the outputs."""

import pytest
import torch
from torch import nn

from deepshrink.errors import UserError
from deepshrink.models import build_model, make_spec
from deepshrink.models.inference import count_batchnorms, fold_batchnorm, inference_copy
from deepshrink.prune.mask import WeightMask


def _with_bn_statistics(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial running statistics and affine parameters, so that folding has work to do."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)
    return model.eval()


@pytest.mark.parametrize("name", ["resnet20", "digits-cnn"])
def test_folding_removes_every_batchnorm_and_keeps_outputs(name):
    spec = make_spec(name) if name == "resnet20" else make_spec(name, in_channels=3, image_size=16)
    torch.manual_seed(0)
    model = _with_bn_statistics(build_model(spec))
    size = 32 if name == "resnet20" else 16
    x = torch.randn(4, 3, size, size)
    before = count_batchnorms(model)
    folded = fold_batchnorm(model)
    assert before > 0 and count_batchnorms(folded) == 0
    assert count_batchnorms(model) == before  # the original is untouched
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-4, atol=1e-4)


def test_inference_copy_bakes_masks_and_uses_channels_last():
    torch.manual_seed(0)
    model = _with_bn_statistics(build_model(make_spec("resnet20")))
    conv = model.layer1[0].conv1
    mask = (torch.rand_like(conv.weight) > 0.5).float()
    torch.nn.utils.parametrize.register_parametrization(conv, "weight", WeightMask(mask), unsafe=True)
    x = torch.randn(2, 3, 32, 32)
    prepared = inference_copy(model)
    assert not any(torch.nn.utils.parametrize.is_parametrized(m) for m in prepared.modules())
    convs = [m for m in prepared.modules() if isinstance(m, nn.Conv2d)]
    assert all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in convs)
    with torch.no_grad():
        torch.testing.assert_close(prepared(x), model(x), rtol=1e-4, atol=1e-4)
    assert torch.nn.utils.parametrize.is_parametrized(conv)  # the original keeps its mask


class _DataDependent(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        if x.sum() > 0:  # control flow on values: torch.fx cannot trace it
            return self.conv(x)
        return x


def test_untraceable_model_is_a_user_error():
    with pytest.raises(UserError, match="not traceable"):
        fold_batchnorm(_DataDependent())


def test_models_with_forward_hooks_are_refused_rather_than_silently_changed():
    from deepshrink.quant.activation import attach_activation_quantizers

    model = build_model(make_spec("digits-cnn", in_channels=3, image_size=16)).eval()
    attach_activation_quantizers(model, ["conv2"], bits=8)
    with pytest.raises(UserError, match="conv2 has forward hooks"):
        inference_copy(model)
