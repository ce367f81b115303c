from collections import OrderedDict

import pytest
import torch
from torch import nn

from deepshrink.analysis.early_exit import exit_macs, first_exits, threshold_sweep
from deepshrink.models.early_exit import EarlyExitModel, exit_score


def _model():
    torch.manual_seed(0)
    backbone = nn.Sequential(OrderedDict(
        stage1=nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.ReLU()),
        stage2=nn.Sequential(nn.Conv2d(4, 8, 3, padding=1, stride=2, bias=False), nn.ReLU()),
        pool=nn.AdaptiveAvgPool2d(1), flat=nn.Flatten(), fc=nn.Linear(8, 4)))
    model = EarlyExitModel(backbone, ["stage1", "stage2"], 4, input_shape=(3, 8, 8))
    with torch.no_grad():
        for head in model.exits:
            head[2].weight.mul_(20)
    return model.eval()


def _batches():
    torch.manual_seed(1)
    return [(torch.randn(16, 3, 8, 8), torch.randint(0, 4, (16,))) for _ in range(3)]


def test_exit_macs_by_hand():
    conv1 = 8 * 8 * 3 * 3 * 3 * 4   # 8x8 map, 3x3 kernel, 3 -> 4 channels: 6912
    conv2 = 4 * 4 * 3 * 3 * 4 * 8   # stride 2 -> 4x4 map, 4 -> 8 channels: 4608
    fc, head1, head2 = 8 * 4, 4 * 4, 8 * 4
    assert exit_macs(_model()) == [conv1 + head1, conv1 + conv2 + head1 + head2,
                                   conv1 + conv2 + fc + head1 + head2]


def test_first_exits_picks_the_first_passing_head():
    sure, unsure = torch.tensor([10.0, 0, 0, 0]), torch.zeros(4)
    logits = torch.stack([torch.stack([sure, sure, sure]), torch.stack([unsure, sure, sure]),
                          torch.stack([unsure, unsure, unsure])])
    assert first_exits(logits, 0.9).tolist() == [0, 1, 2]
    assert first_exits(logits, 0.1, "entropy").tolist() == [0, 1, 2]


def test_sweep_ends_match_one_exit_and_macs_grow_with_the_threshold():
    model = _model()
    macs = exit_macs(model)
    thresholds = [0.0, 0.3, 0.5, 0.7, 0.9, 0.99, 1.01]
    points = threshold_sweep(model, _batches(), thresholds)
    assert points[0].exit_fractions == [1.0, 0.0, 0.0] and points[0].avg_macs == macs[0]
    assert points[-1].exit_fractions == [0.0, 0.0, 1.0] and points[-1].avg_macs == macs[-1]
    averages = [p.avg_macs for p in points]
    assert averages == sorted(averages) and len(set(averages)) > 3


def test_sweep_agrees_with_predict_with_exits():
    model = _model()
    batches = _batches()
    x, y = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    macs = exit_macs(model)
    model(x)
    middle = exit_score(model.exit_logits[0], "confidence").median().item()
    for criterion, threshold in (("confidence", middle), ("confidence", 0.999), ("entropy", 0.5)):
        predictions, taken = model.predict_with_exits(x, threshold, criterion)
        point = threshold_sweep(model, batches, [threshold], criterion)[0]
        assert point.accuracy == pytest.approx((predictions == y).double().mean().item())
        assert point.avg_macs == pytest.approx(sum(macs[i] for i in taken.tolist()) / len(y))
        assert point.exit_fractions == pytest.approx([(taken == i).double().mean().item() for i in range(3)])
    taken = model.predict_with_exits(x, middle)[1]
    assert 0 < (taken == 0).sum() < len(y)  # the agreement above covered a real mix of exits
