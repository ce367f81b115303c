import pytest
import torch
from torch import nn

from deepshrink.prune import attach_masks, magnitude_mask
from deepshrink.prune.sensitivity import Sensitivity, plot_sensitivity, sensitivity_scan, sensitivity_targets


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(10, 10, bias=False), nn.Linear(10, 4, bias=False))


def _kept_fraction(model):
    """A stand-in accuracy: the fraction of non-zero weights of the first layer."""
    return float((model[0].weight != 0).float().mean())


def test_scan_prunes_one_layer_at_a_time_and_restores_it():
    model = _model()
    before = [m.weight.detach().clone() for m in model]
    seen = []  # per evaluation: the kept fraction of each layer, so the other layer is checked too

    def evaluate(m):
        seen.append(tuple(float((layer.weight != 0).float().mean()) for layer in m))
        return _kept_fraction(m)

    result = sensitivity_scan(model, ["0", "1"], [0.0, 0.5, 0.9], evaluate)
    assert result.baseline == 1.0
    assert result.accuracy == {"0": [1.0, 0.5, pytest.approx(0.1)], "1": [1.0, 1.0, 1.0]}
    assert seen == [(1.0, 1.0),  # baseline
                    (1.0, 1.0), (0.5, 1.0), (pytest.approx(0.1), 1.0),  # only layer 0 pruned
                    (1.0, 1.0), (1.0, 0.5), (1.0, pytest.approx(0.1))]  # only layer 1, layer 0 restored
    assert all(torch.equal(m.weight, w) for m, w in zip(model, before))
    assert result.rows()[0] == {"layer": "0", "0": 1.0, "0.5": 0.5, "0.9": pytest.approx(0.1)}


def test_scan_of_a_masked_layer_restores_its_mask():
    model = _model()
    mask = magnitude_mask(model[0].weight, 0.2)
    attach_masks(model, {"0": mask})
    underlying = model[0].parametrizations.weight.original.detach().clone()
    result = sensitivity_scan(model, ["0"], [0.1, 0.5], _kept_fraction)
    assert result.baseline == pytest.approx(0.8)
    assert result.accuracy["0"] == [pytest.approx(0.8), pytest.approx(0.5)]
    assert torch.equal(model[0].parametrizations.weight[0].mask, mask)
    assert torch.equal(model[0].parametrizations.weight.original, underlying)  # pruned through the mask only


def test_targets_stop_at_the_first_sparsity_out_of_tolerance():
    table = Sensitivity(0.90, (0.3, 0.5, 0.7, 0.9),
                        {"a": [0.90, 0.895, 0.87, 0.89], "b": [0.85, 0.9, 0.9, 0.9], "c": [0.9, 0.9, 0.9, 0.9]})
    assert sensitivity_targets(table, 0.01) == {"a": 0.5, "b": 0.0, "c": 0.9}


def test_plot_writes_a_png(tmp_path):
    table = Sensitivity(0.9, (0.3, 0.6), {"a": [0.9, 0.8], "b": [0.85, 0.7]})
    plot_sensitivity(table, tmp_path / "s.png")
    assert (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
