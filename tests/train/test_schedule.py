import math

import pytest
import torch

from deepshrink.errors import UserError
from deepshrink.train.schedule import cosine, make_schedule, multistep, onecycle


def test_cosine_ends_at_zero_and_warms_up_linearly():
    f = cosine(100, warmup_steps=10)
    assert f(0) == pytest.approx(0.1)
    assert f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0)
    assert f(55) == pytest.approx(0.5)
    assert f(100) == pytest.approx(0.0)


def test_multistep_milestones_in_epochs():
    f = make_schedule("step", epochs=10, steps_per_epoch=5, milestones=(4, 8), gamma=0.1)
    assert [f(s) for s in (0, 19, 20, 39, 40)] == pytest.approx([1, 1, 0.1, 0.1, 0.01])
    assert multistep([3])(3) == pytest.approx(0.1)


def test_onecycle_matches_torch_onecycle_shape():
    total = 200
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    ref = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1.0, total_steps=total,
                                              anneal_strategy="cos", cycle_momentum=False)
    ours = onecycle(total)
    for step in range(total - 1):
        assert ours(step) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-6, abs=1e-9)
        opt.step()
        ref.step()
    assert ours(total - 1) == pytest.approx(1 / 25 / 1e4)
    assert max(ours(s) for s in range(total)) == pytest.approx(1.0)


def test_unknown_schedule_is_a_user_error():
    with pytest.raises(UserError, match="unknown schedule"):
        make_schedule("linear-ish", epochs=1, steps_per_epoch=1)


def test_constant():
    f = make_schedule("constant", epochs=3, steps_per_epoch=7)
    assert all(math.isclose(f(s), 1.0) for s in range(21))
