import pytest

from deepshrink.errors import UserError
from deepshrink.train import TrainConfig


@pytest.mark.parametrize("field,value", [
    ("epochs", -1), ("batch_size", 0), ("lr", 0.0), ("momentum", 1.0), ("weight_decay", -1e-4),
    ("label_smoothing", 1.0), ("optimizer", "rmsprop"), ("schedule", "exp"), ("eval_every", 0),
])
def test_bad_values_are_user_errors(field, value):
    with pytest.raises(UserError):
        TrainConfig(**{field: value})


def test_resume_conflicts_ignore_device_and_progress():
    saved = TrainConfig(lr=0.1).to_dict()
    assert TrainConfig(lr=0.1, device="cpu", progress=False).resume_conflicts(saved) == []
    assert TrainConfig(lr=0.2).resume_conflicts(saved) == ["lr"]
