import math
from collections import OrderedDict

import pytest
import torch
from torch import nn

from deepshrink.errors import UserError
from deepshrink.models import build_model, make_spec
from deepshrink.models.early_exit import EarlyExitModel, exit_score


def _backbone():
    torch.manual_seed(0)
    return nn.Sequential(OrderedDict(
        stage1=nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU()),
        stage2=nn.Sequential(nn.Conv2d(4, 8, 3, padding=1, stride=2), nn.ReLU()),
        pool=nn.AdaptiveAvgPool2d(1), flat=nn.Flatten(), fc=nn.Linear(8, 5)))


def _model():
    model = EarlyExitModel(_backbone(), ["stage1", "stage2"], 5, input_shape=(3, 8, 8))
    with torch.no_grad():  # spread the exits' confidences
        for head in model.exits:
            head[2].weight.mul_(20)
    return model.eval()


def test_forward_returns_the_backbone_logits_and_keeps_each_exits():
    model = _model()
    x = torch.randn(6, 3, 8, 8)
    out = model(x)
    first, second = model.exit_logits
    torch.testing.assert_close(out, model.backbone(x))
    assert len(model.exit_logits) == 2  # the backbone called on its own runs no heads
    torch.testing.assert_close(first, model.exits[0](model.backbone.stage1(x)))
    assert first.shape == second.shape == (6, 5)
    assert [head[2].in_features for head in model.exits] == [4, 8]


def test_threshold_zero_leaves_at_the_first_exit_and_above_one_reaches_the_end():
    model = _model()
    x = torch.randn(7, 3, 8, 8)
    model(x)
    first = model.exit_logits[0].argmax(1)
    predictions, taken = model.predict_with_exits(x, 0.0)
    assert taken.tolist() == [0] * 7 and torch.equal(predictions, first)
    predictions, taken = model.predict_with_exits(x, 1.01)
    assert taken.tolist() == [2] * 7 and torch.equal(predictions, model(x).argmax(1))
    # entropy: everything is below log(5) nats, nothing below 0
    assert model.predict_with_exits(x, math.log(5) + 1e-6, "entropy")[1].tolist() == [0] * 7
    assert model.predict_with_exits(x, -1.0, "entropy")[1].tolist() == [2] * 7


def test_each_input_leaves_at_its_first_confident_exit_with_that_exits_prediction():
    model = _model()
    x = torch.randn(32, 3, 8, 8)
    final = model(x)
    logits = [*model.exit_logits, final]
    confidence = [exit_score(z, "confidence") for z in logits]
    threshold = confidence[0].median().item()
    predictions, taken = model.predict_with_exits(x, threshold)
    for n in range(32):
        expected = next((i for i in range(2) if confidence[i][n] >= threshold), 2)
        assert taken[n] == expected
        assert predictions[n] == logits[expected][n].argmax()
    assert 0 < (taken == 0).sum() < 32  # a real mix: the others ran on through the smaller batch


def test_works_on_a_zoo_resnet_stage_by_stage():
    backbone = build_model(make_spec("resnet20", num_classes=3, image_size=8, width=4))
    model = EarlyExitModel(backbone, ["layer1", "layer2"], 3, input_shape=(3, 8, 8)).train()
    x = torch.randn(4, 3, 8, 8)
    features = {}
    for name in ("layer1", "layer2"):
        getattr(backbone, name).register_forward_hook(lambda m, i, out, name=name: features.__setitem__(name, out))
    out = model(x)
    assert [z.shape for z in model.exit_logits] == [(4, 3), (4, 3)]
    for head, name, logits in zip(model.exits, ("layer1", "layer2"), model.exit_logits, strict=True):
        assert torch.equal(logits, head(features[name])), name  # each head reads its stage's output
    assert torch.equal(out, backbone(x))  # the final logits are the backbone's own
    predictions, taken = model.predict_with_exits(torch.randn(4, 3, 8, 8), 0.5)
    assert model.training and predictions.shape == taken.shape == (4,)
    assert set(taken.tolist()) <= {0, 1, 2} and set(predictions.tolist()) <= {0, 1, 2}


@pytest.mark.parametrize("points,needle", [
    (["nope"], "unknown: nope"),
    ([], r"distinct modules of the backbone, got \[\]"),
    (["stage2", "stage1"], "in forward order"),
    (["fc"], r"need \(N, C, H, W\) feature maps; fc is not one"),
    (["stage1", "stage1"], "distinct modules of the backbone"),
])
def test_bad_exit_points_are_user_errors(points, needle):
    with pytest.raises(UserError, match=needle):
        EarlyExitModel(_backbone(), points, 5, input_shape=(3, 8, 8))


def test_unknown_criterion_is_a_user_error():
    with pytest.raises(UserError, match="criterion"):
        _model().predict_with_exits(torch.randn(1, 3, 8, 8), 0.5, "margin")
