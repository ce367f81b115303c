import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from deepshrink.errors import UserError
from deepshrink.models import InputSpec, ModelInfo, build_model, load_model, make_spec, save_model
from deepshrink.models.attach import describe_parametrizations, register_parametrization


@register_parametrization("test-channel-scale")
class ChannelScale(nn.Module):
    """Multiplies each output channel by a stored factor (a stand-in for a mask or quantizer)."""

    def __init__(self, channels: int, offset: float = 0.0):
        super().__init__()
        self.offset = offset
        self.register_buffer("scale", torch.ones(channels))

    def forward(self, weight):
        return weight * (self.scale + self.offset).view(-1, *([1] * (weight.dim() - 1)))

    def spec(self):
        return {"offset": self.offset}

    @classmethod
    def from_spec(cls, tensor, args):
        return cls(tensor.shape[0], **args)


def _model_and_info():
    spec = make_spec("digits-cnn")
    torch.manual_seed(0)
    return build_model(spec), ModelInfo(spec, InputSpec((1, 8, 8), (0.3,), (0.4,)))


def test_parametrizations_survive_save_and_load(tmp_path):
    model, info = _model_and_info()
    conv = model.get_submodule(next(n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)))
    scale = ChannelScale(conv.out_channels, offset=0.5)
    scale.scale.uniform_(0, 1)
    parametrize.register_parametrization(conv, "weight", scale)
    save_model(tmp_path / "m.safetensors", model, info)
    loaded, back = load_model(tmp_path / "m.safetensors")
    assert back.parametrizations == describe_parametrizations(model)
    assert back.parametrizations[0]["kind"] == "test-channel-scale"
    assert back.parametrizations[0]["args"] == {"offset": 0.5}
    x = torch.randn(2, 1, 8, 8)
    model.eval()
    assert torch.equal(loaded(x), model(x))


def test_unregistered_parametrization_cannot_be_saved(tmp_path):
    class Anonymous(nn.Module):
        def forward(self, w):
            return w

    model, info = _model_and_info()
    conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    parametrize.register_parametrization(conv, "weight", Anonymous())
    with pytest.raises(ValueError, match="not registered"):
        save_model(tmp_path / "m.safetensors", model, info)


def test_unknown_kind_in_file_is_a_user_error(tmp_path):
    from deepshrink.models.attach import restore_parametrizations

    model, _ = _model_and_info()
    conv_name = next(n for n, m in model.named_modules() if isinstance(m, nn.Conv2d))
    with pytest.raises(UserError, match="does not know"):
        restore_parametrizations(model, [{"module": conv_name, "tensor": "weight", "kind": "nope", "args": {}}])
    with pytest.raises(UserError, match="does not have"):
        restore_parametrizations(model, [{"module": "no.such", "tensor": "weight", "kind": "test-channel-scale"}])


def test_copy_model_can_be_unparametrized_without_touching_the_original():
    from deepshrink.models.attach import copy_model

    model, _ = _model_and_info()
    conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    parametrize.register_parametrization(conv, "weight", ChannelScale(conv.out_channels))
    clone = copy_model(model)
    clone_conv = next(m for m in clone.modules() if isinstance(m, nn.Conv2d))
    parametrize.remove_parametrizations(clone_conv, "weight")
    assert parametrize.is_parametrized(conv) and conv.weight.shape == clone_conv.weight.shape
