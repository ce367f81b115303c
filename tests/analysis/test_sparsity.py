import torch
from torch import nn

from deepshrink.analysis.sparsity import layer_sparsity, sparsity_summary
from deepshrink.prune import attach_masks


def _model():
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[0.0, 1, 0, 2], [3, 0, 0, 4], [5, 6, 0, 7]]))  # 5 zeros
        model[0].bias.copy_(torch.tensor([0.0, 1, 2]))                                     # 1 zero
        model[1].bias.zero_()                                                             # 3 zeros
    return model


def test_rows_count_zeros_of_each_layer():
    rows = layer_sparsity(_model())
    assert [(r.name, r.type, r.params, r.nonzero) for r in rows] == [("0", "Linear", 15, 9), ("1", "BatchNorm1d", 6, 3)]
    assert rows[0].sparsity == 6 / 15


def test_masked_weights_are_read_through_the_mask():
    model = _model()
    mask = torch.ones(3, 4)
    mask[2, 0] = mask[2, 1] = 0
    attach_masks(model, {"0": mask}, zero_pruned=False)  # the weights behind the mask stay non-zero
    summary = sparsity_summary(model)
    assert summary["layers"][0] == {"name": "0", "type": "Linear", "params": 15, "nonzero": 7,
                                    "sparsity": 8 / 15}
    assert summary["total"] == {"params": 21, "nonzero": 10, "sparsity": 11 / 21}


def test_root_parameters_are_a_row():
    model = nn.Module()
    model.token = nn.Parameter(torch.tensor([0.0, 1.0]))
    assert [(r.name, r.params, r.nonzero) for r in layer_sparsity(model)] == [("(model)", 2, 1)]
