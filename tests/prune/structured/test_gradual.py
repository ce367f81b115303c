"""Gradual structured pruning: zeroed channels output 0, the schedule grows then fixes the
channel set, and removing the zeroed channels keeps the outputs."""

import json
from types import SimpleNamespace

import pytest
import torch

from deepshrink.errors import ConfigError, UserError
from deepshrink.models import build_model, make_spec
from deepshrink.prune.structured import StructuredConfig, plan_channels, prune_channels
from deepshrink.prune.structured.gradual import GradualChannelPruning, zero_channels

from .conftest import SeparableNet

SHAPE = (3, 16, 16)


def _resnet() -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(make_spec("resnet20", num_classes=4, in_channels=3, image_size=16))
    for m in model.modules():  # non-trivial BatchNorm statistics and affine parameters
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5), m.bias.data.uniform_(-0.2, 0.2)
    return model


def _removed(plan) -> int:
    return sum(len(index) for index in plan.removed.values())


@pytest.mark.parametrize("settings", [StructuredConfig(ratio=0.5, global_ranking=True),  # residual groups too
                                      StructuredConfig(ratio=0.5, li_resnet_rule=True)])
def test_zeroed_channels_output_exactly_zero_and_their_removal_keeps_outputs(settings):
    model = _resnet()
    plan = plan_channels(model, SHAPE, settings)
    assert any(group.residual for group, index in plan.removed.items() if len(index)) == settings.global_ranking
    zero_channels(model, plan.removed)
    seen = {}
    hooks = [model.get_submodule(name).register_forward_hook(lambda m, i, o, name=name: seen.__setitem__(name, o))
             for group in plan.removed for name, role in group.slices if role == "bn"]
    x = torch.randn(8, *SHAPE)
    model.train()(x)  # batch statistics: a zero channel has mean 0 and variance 0
    for group, index in plan.removed.items():
        for (name, role), features in group.removal(index).items():
            if role == "bn" and len(index):
                assert torch.equal(seen[name][:, features], torch.zeros_like(seen[name][:, features]))
    for hook in hooks:
        hook.remove()
    model.eval()
    zeroed = model(x)
    prune_channels(model, SHAPE, settings, plan=plan)
    assert model.layer1[0].conv1.out_channels < 16
    torch.testing.assert_close(model(x), zeroed, rtol=1e-5, atol=1e-5)


def test_depthwise_channels_zero_and_remove_alike():
    torch.manual_seed(0)
    model = SeparableNet().eval()
    settings = StructuredConfig(ratio=0.5)
    plan = plan_channels(model, (3, 4, 4), settings)
    zero_channels(model, plan.removed)
    x = torch.randn(4, 3, 4, 4)
    zeroed = model(x)
    prune_channels(model, (3, 4, 4), settings, plan=plan)
    assert model.dw.out_channels == model.dw.groups == 4
    torch.testing.assert_close(model(x), zeroed, rtol=1e-5, atol=1e-6)


def _nudge(model: torch.nn.Module) -> None:
    """A stand-in for an optimiser step: every parameter moves a little."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)


def test_linear_schedule_grows_the_plan_then_keeps_it_at_zero():
    model = _resnet()
    settings = StructuredConfig(ratio=0.5, li_resnet_rule=True, schedule="linear", prune_epochs=2)
    hook = GradualChannelPruning(model, SHAPE, settings, epochs=4)
    trainer = SimpleNamespace(model=model)
    conv = model.layer1[0].conv1

    hook.on_epoch_start(trainer, 0)  # a quarter of the channels of every group
    first = hook.plan
    assert first.ratio == 0.25 and len(first.removed) == 9 and _removed(first) == 3 * (4 + 8 + 16)  # widths 16, 32, 64
    gone = first.removed[next(g for g in first.removed if g.name == "layer1.0.conv1")]
    assert conv.weight[gone].abs().sum() == 0
    _nudge(model)
    hook.after_step(trainer)  # soft: zeroed weights may grow back during the ramp
    assert conv.weight[gone].abs().sum() > 0

    hook.on_epoch_start(trainer, 1)  # the last ramp step: half, then fixed
    final = hook.plan
    assert final.ratio == 0.5 and _removed(final) == 3 * (8 + 16 + 32)
    _nudge(model)
    hook.after_step(trainer)
    for group, index in final.removed.items():
        weight = model.get_submodule(group.name).weight
        assert weight[index].abs().sum() == 0 and weight.abs().sum() > 0

    hook.on_epoch_start(trainer, 2)  # after the ramp: same plan
    assert hook.plan is final


def test_state_round_trip_restores_the_plan_by_group_name():
    model = _resnet()
    settings = StructuredConfig(target_macs_reduction=0.3, schedule="agp", prune_epochs=1)
    hook = GradualChannelPruning(model, SHAPE, settings, epochs=2)
    assert GradualChannelPruning(model, SHAPE, settings, epochs=2).state_dict() == {}
    hook.on_epoch_start(SimpleNamespace(model=model), 0)
    state = json.loads(json.dumps(hook.state_dict()))  # plain data
    restored = GradualChannelPruning(model, SHAPE, settings, epochs=2)
    restored.load_state_dict(state)
    assert restored.plan.ratio == hook.plan.ratio and restored.plan.skipped == hook.plan.skipped
    assert {g.name: i.tolist() for g, i in restored.plan.removed.items()} == \
           {g.name: i.tolist() for g, i in hook.plan.removed.items()}
    result = prune_channels(model, SHAPE, settings, plan=restored.plan)
    assert result.macs_after <= 0.7 * result.macs_before


def test_scaled_settings_scale_every_amount():
    settings = StructuredConfig(ratio=0.4, layer_ratios={"layer1.*": 0.6}, schedule="linear", prune_epochs=3)
    half = settings.scaled(0.5)
    assert half.ratio == pytest.approx(0.2) and half.layer_ratios == {"layer1.*": pytest.approx(0.3)}
    assert half.schedule == "oneshot" and half.prune_epochs is None
    assert StructuredConfig(target_macs_reduction=0.5).scaled(0.25).target_macs_reduction == 0.125
    assert settings.fractions(6) == {0: pytest.approx(1 / 3), 1: pytest.approx(2 / 3), 2: 1.0}
    assert StructuredConfig(ratio=0.4, schedule="linear").fractions(4) == {0: 0.5, 1: 1.0}


@pytest.mark.parametrize("settings,epochs,needle", [
    (StructuredConfig(ratio=0.5, schedule="linear"), 0, "StructuredConfig.schedule 'linear' prunes while fine-tuning"),
    (StructuredConfig(ratio=0.5, schedule="linear", prune_epochs=5), 4,
     "StructuredConfig.prune_epochs must be at most the 4 fine-tuning epochs"),
])
def test_schedule_settings_are_checked(settings, epochs, needle):
    with pytest.raises(UserError, match=needle):
        settings.check_epochs(epochs)


def test_an_unknown_schedule_is_refused_on_construction():
    with pytest.raises(ConfigError, match="StructuredConfig.schedule must be one of oneshot, linear, agp, got 'cubic'"):
        StructuredConfig(ratio=0.5, schedule="cubic")


def test_a_parametrized_model_is_refused_before_training():
    model = _resnet()
    torch.nn.utils.parametrize.register_parametrization(model.layer1[0].conv1, "weight", torch.nn.Identity())
    with pytest.raises(UserError, match="layer1.0.conv1 has a pruning mask or quantizer attached"):
        GradualChannelPruning(model, SHAPE, StructuredConfig(ratio=0.5, schedule="linear"), epochs=2)
