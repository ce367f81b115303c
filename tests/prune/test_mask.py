from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from deepshrink.errors import UserError
from deepshrink.models import InputSpec, ModelInfo, build_model, load_model, make_spec, save_model
from deepshrink.prune import WeightMask, attach_masks, finalize, magnitude_mask, masks_of, prunable_layers
from deepshrink.prune.criteria import mask_method
from deepshrink.prune.schedules import PruneSchedule


def _digits_cnn():
    torch.manual_seed(0)
    spec = make_spec("digits-cnn")
    return build_model(spec), ModelInfo(spec, InputSpec((1, 8, 8), (0.3,), (0.4,)))


def _half_masks(model):
    layers = prunable_layers(model, exclude_first_last=False)
    return {name: magnitude_mask(m.weight, 0.5) for name, m in layers.items()}


def _sgd_steps(model, optimizer, steps, seed=0):
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(8, 1, 8, 8, generator=gen)
        y = torch.randint(0, 10, (8,), generator=gen)
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test_pruned_weights_stay_exactly_zero_through_sgd_with_momentum_and_weight_decay():
    model, _ = _digits_cnn()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-3)
    _sgd_steps(model, optimizer, 5)  # momentum buffers are non-zero everywhere before pruning
    masks = _half_masks(model)
    attach_masks(model, masks)
    _sgd_steps(model, optimizer, 20, seed=1)
    for name, mask in masks.items():
        module = model.get_submodule(name)
        assert torch.all(module.weight[mask == 0] == 0.0)
        assert torch.all(module.parametrizations.weight.original.grad[mask == 0] == 0.0)
        assert torch.any(module.weight[mask == 1] != 0.0)


def test_fixed_schedule_keeps_the_underlying_weights_zero_too():
    model, _ = _digits_cnn()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-3)
    _sgd_steps(model, optimizer, 5)
    names = list(prunable_layers(model))
    hook = PruneSchedule(names, mask_method("magnitude"), {0: 0.5})
    trainer = SimpleNamespace(model=model, epoch=0)
    hook.on_fit_start(trainer)
    hook.on_epoch_start(trainer, 0)
    masks = masks_of(model)
    for _ in range(10):
        _sgd_steps(model, optimizer, 1)
        hook.after_step(trainer)
    for name in names:
        original = model.get_submodule(name).parametrizations.weight.original
        assert torch.all(original[masks[name] == 0] == 0.0)


def test_masks_survive_save_and_load(tmp_path):
    model, info = _digits_cnn()
    masks = _half_masks(model)
    attach_masks(model, masks)
    save_model(tmp_path / "m.safetensors", model, info)
    loaded, back = load_model(tmp_path / "m.safetensors")
    assert {r["kind"] for r in back.parametrizations} == {"mask"}
    restored = masks_of(loaded)
    assert restored.keys() == masks.keys()
    for name in masks:
        assert torch.equal(restored[name], masks[name])
    x = torch.randn(3, 1, 8, 8)
    assert torch.equal(loaded(x), model.eval()(x))


def test_attach_updates_an_existing_mask_in_place():
    model, _ = _digits_cnn()
    attach_masks(model, {"conv2": torch.ones_like(model.conv2.weight)})
    first = model.conv2.parametrizations.weight[0]
    buffer = first.mask
    underlying = model.conv2.parametrizations.weight.original.detach().clone()
    mask = torch.zeros_like(model.conv2.weight)
    mask[0] = 1
    attach_masks(model, {"conv2": mask}, zero_pruned=False)
    assert len(model.conv2.parametrizations.weight) == 1
    assert model.conv2.parametrizations.weight[0] is first and first.mask is buffer  # updated, not replaced
    assert torch.equal(model.conv2.parametrizations.weight[0].mask, mask)
    assert int((model.conv2.weight != 0).sum()) == model.conv2.weight[0].numel()
    assert torch.equal(model.conv2.weight, underlying * mask)
    assert torch.equal(model.conv2.parametrizations.weight.original, underlying)  # zero_pruned=False
    attach_masks(model, {"conv2": mask})  # the default zeroes the pruned underlying weights
    assert torch.equal(model.conv2.parametrizations.weight.original, underlying * mask)


def test_finalize_bakes_masks_into_plain_weights():
    model, _ = _digits_cnn()
    masks = _half_masks(model)
    attach_masks(model, masks, zero_pruned=False)
    expected = {name: model.get_submodule(name).weight.detach().clone() for name in masks}
    finalize(model)
    assert not any(parametrize.is_parametrized(m) for m in model.modules())
    for name in masks:
        weight = model.get_submodule(name).weight
        assert isinstance(weight, nn.Parameter) and torch.equal(weight, expected[name])
    assert all("parametrizations" not in key for key in model.state_dict())


def test_mask_must_come_first_and_fit_the_weight():
    class Double(nn.Module):
        def forward(self, w):
            return 2 * w

    model, _ = _digits_cnn()
    parametrize.register_parametrization(model.conv2, "weight", Double())
    with pytest.raises(UserError, match="prune before quantizing"):
        attach_masks(model, {"conv2": torch.ones_like(model.conv2.weight)})
    with pytest.raises(ValueError, match="shape"):
        attach_masks(model, {"conv3": torch.ones(3)})


def test_weight_mask_spec_round_trip():
    original = WeightMask(torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]]))
    assert original.spec() == {}  # the mask itself travels in the state dict, not the spec
    mask = WeightMask.from_spec(torch.zeros(2, 3), original.spec())
    assert torch.equal(mask.mask, torch.ones(2, 3))  # a placeholder of the weight's shape
    mask.load_state_dict(original.state_dict())
    assert torch.equal(mask.mask, original.mask)
    assert torch.equal(mask(torch.full((2, 3), 2.0)), 2.0 * original.mask)
