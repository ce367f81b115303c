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
    scale = ChannelScale(conv.out_channels, offset=0.5)
    parametrize.register_parametrization(conv, "weight", scale)
    original, effective = conv.parametrizations.weight.original.detach().clone(), conv.weight.detach().clone()
    clone = copy_model(model)
    clone_conv = next(m for m in clone.modules() if isinstance(m, nn.Conv2d))
    parametrize.remove_parametrizations(clone_conv, "weight")
    assert parametrize.is_parametrized(conv) and conv.weight.shape == clone_conv.weight.shape
    assert torch.equal(clone_conv.weight, effective)  # the clone keeps the effective weight
    with torch.no_grad():
        clone_conv.weight.zero_()  # shares no storage with the original
    assert torch.equal(conv.parametrizations.weight.original, original) and torch.equal(conv.weight, effective)
    assert not torch.equal(effective, original)  # offset 0.5: the parametrization does change the weight


# --- hooked submodules -----------------------------------------------------------------------

from deepshrink.models.attach import (HookedRole, attach_hooked, describe_hooked_submodules,  # noqa: E402
                                      detach_hooked_submodules, hooked_submodules_of, register_hooked_submodule,
                                      restore_hooked_submodules)


def add_to_input_hook(module, args):
    return (module.input_offset(args[0]), *args[1:])


def add_to_output_hook(module, args, output):
    return module.output_offset(output)


@register_hooked_submodule("test-offset")
class Offset(nn.Module):
    """Adds ``scale * offset`` to a tensor (offset: a buffer, scale: a constructor argument)."""

    roles = {"input": HookedRole("input_offset", add_to_input_hook, pre=True),
             "output": HookedRole("output_offset", add_to_output_hook, pre=False)}

    def __init__(self, scale: float = 1.0):
        super().__init__()
        self.scale = scale
        self.register_buffer("offset", torch.zeros(()))

    def forward(self, x):
        return x + self.scale * self.offset

    def spec(self):
        return {"scale": self.scale}

    @classmethod
    def from_spec(cls, args):
        return cls(**args)


def _two_layers():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).eval()


def _with_offsets(model):
    first, last = Offset(2.0), Offset(0.5)
    first.offset.fill_(0.25)
    last.offset.fill_(-3.0)
    attach_hooked(model[0], "input", first)
    attach_hooked(model[2], "output", last)
    return model


def test_hooks_run_the_submodules_as_their_roles_say():
    model = _with_offsets(_two_layers())
    x = torch.randn(5, 3)
    plain = _two_layers()  # the same weights (the same seed), no hooks
    expected = plain(x + 2.0 * 0.25) - 0.5 * 3.0
    assert torch.allclose(model(x), expected)
    assert [(name, role) for name, role, _ in hooked_submodules_of(model, "test-offset")] == [("0", "input"),
                                                                                              ("2", "output")]
    assert hooked_submodules_of(model, "test-never-registered") == []


def test_new_submodules_follow_their_modules_mode():
    model = _two_layers()
    attach_hooked(model[0], "input", Offset())
    assert not model[0].input_offset.training
    with pytest.raises(ValueError, match="already has"):
        attach_hooked(model[0], "input", Offset())


def test_describe_restore_round_trip_through_json():
    import json

    model = _with_offsets(_two_layers())
    records = json.loads(json.dumps(describe_hooked_submodules(model, "test-offset")))
    assert records == [{"module": "0", "role": "input", "args": {"scale": 2.0}},
                       {"module": "2", "role": "output", "args": {"scale": 0.5}}]
    clone = _two_layers()
    restore_hooked_submodules(clone, "test-offset", records)
    assert float(clone[0].input_offset.offset) == 0.0  # placeholders: buffers come with the state dict
    clone.load_state_dict(model.state_dict())
    x = torch.randn(4, 3)
    assert torch.equal(clone(x), model(x))
    assert describe_hooked_submodules(clone, "test-offset") == records


def test_detach_removes_submodules_and_hooks():
    model = _with_offsets(_two_layers())
    detach_hooked_submodules(model, "test-offset")
    assert hooked_submodules_of(model, "test-offset") == []
    assert not model[0]._forward_pre_hooks and not model[2]._forward_hooks
    x = torch.randn(2, 3)
    assert torch.equal(model(x), _two_layers()(x))


def test_copies_call_their_own_submodules():
    from deepshrink.models.attach import copy_model

    model = _with_offsets(_two_layers())
    clone = copy_model(model)
    clone[0].input_offset.offset.fill_(10.0)
    x = torch.randn(2, 3)
    assert torch.allclose(clone(x), _two_layers()(x + 20.0) - 1.5)
    assert torch.allclose(model(x), _two_layers()(x + 0.5) - 1.5)


def test_bad_records_and_registrations():
    model = _with_offsets(_two_layers())
    with pytest.raises(UserError, match="does not know"):
        restore_hooked_submodules(_two_layers(), "test-no-such-kind", [])
    for record in ({"module": "7", "role": "input"}, {"module": "0", "role": "sideways"}, {"role": "input"}, None):
        with pytest.raises(UserError, match="does not have"):
            restore_hooked_submodules(_two_layers(), "test-offset", [record])
    with pytest.raises(UserError, match="two input offsets"):
        restore_hooked_submodules(model, "test-offset", [{"module": "0", "role": "input", "args": {}}])
    with pytest.raises(ValueError, match="registered twice"):
        register_hooked_submodule("test-offset")(type("Other", (Offset,), {}))
    with pytest.raises(TypeError, match="lacks roles"):
        register_hooked_submodule("test-no-roles")(ChannelScale)


class Halves(nn.Module):
    """A quantizer kind of this test: weights round to multiples of 0.5 (codebook -4..4)."""

    levels = torch.arange(-8, 9).float().view(1, -1) / 2

    def forward(self, w):
        codebook, indices = self.quantized_representation(w)
        return codebook[0, indices]

    def quantized_representation(self, original):
        return self.levels, (original.clamp(-4, 4) * 2).round().long() + 8


def test_quantizer_of_finds_the_quantizer_anywhere_on_the_chain():
    from deepshrink.models.attach import QuantizedRepresentation, quantized_representation_of, quantizer_of

    conv = nn.Conv2d(2, 3, 1, bias=True)
    assert quantizer_of(conv) is None and quantized_representation_of(conv) is None
    scale, quantizer, mask = ChannelScale(3, offset=2.0), Halves(), ChannelScale(3)
    for step in (scale, quantizer, mask):
        parametrize.register_parametrization(conv, "weight", step)
    assert isinstance(quantizer, QuantizedRepresentation) and not isinstance(mask, QuantizedRepresentation)
    assert quantizer_of(conv) is quantizer and quantizer_of(conv, "bias") is None
    codebook, indices = quantized_representation_of(conv)
    original = conv.parametrizations.weight.original
    assert torch.equal(indices, Halves().quantized_representation(3 * original)[1])  # scaled before it
    assert torch.equal(codebook[0, indices], conv.weight) and not indices.requires_grad
    last = Halves()
    parametrize.register_parametrization(conv, "weight", last)
    assert quantizer_of(conv) is last  # the one whose codes the weight holds


def test_the_model_layer_imports_no_stage_above_it():
    """``deepshrink.models`` is the lower layer: no module of it imports (even lazily, inside a
    function, or by a name given to importlib) the packages that build on it."""
    import ast
    from pathlib import Path

    import deepshrink.models

    above = ("deepshrink.prune", "deepshrink.quant", "deepshrink.train", "deepshrink.pipeline",
             "deepshrink.codec", "deepshrink.analysis", "deepshrink.cli", "deepshrink.stages")
    offenders = []
    for path in Path(deepshrink.models.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom)
                     else [node.value] if isinstance(node, ast.Constant) and isinstance(node.value, str) else [])
            offenders += [f"{path.name}: {name}" for name in names
                          if any(name == top or name.startswith(top + ".") for top in above)]
    assert offenders == []


@pytest.mark.slow
def test_a_fresh_process_loads_every_stage_kind(tmp_path):
    """The stage packages register their kinds on import (:mod:`deepshrink.stages`): a fresh
    process that imports them and ``deepshrink.models`` loads a file with masks, quantizers and
    activation quantizers."""
    import subprocess
    import sys

    from deepshrink.prune import attach_masks
    from deepshrink.quant import QuantConfig, calibrate_activations, quantize_

    model, info = _model_and_info()
    attach_masks(model, {"conv2": (torch.rand_like(model.conv2.weight) > 0.5).float()})
    quantize_(model, QuantConfig("linear", 8, activation_bits=8))
    calibrate_activations(model, [torch.randn(4, 1, 8, 8)])
    x = torch.randn(3, 1, 8, 8)
    torch.save(model.eval()(x).detach(), tmp_path / "expected.pt")
    torch.save(x, tmp_path / "x.pt")
    save_model(tmp_path / "m.safetensors", model, info)
    script = f"""
import sys
import torch
import deepshrink.models as models
assert "deepshrink.stages" in sys.modules
model, info = models.load_model({str(tmp_path / "m.safetensors")!r})
x = torch.load({str(tmp_path / "x.pt")!r}, weights_only=True)
expected = torch.load({str(tmp_path / "expected.pt")!r}, weights_only=True)
assert torch.equal(model(x), expected)
assert {{p["kind"] for p in info.parametrizations}} == {{"mask", "linear-quant"}}
assert len(info.activation_quantizers) > 0
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
