"""deepshrink.progress: silent for short work, a line per step in a log once a step is slow."""

import pytest

from deepshrink import progress


def test_short_work_is_silent(capsys):
    assert list(progress.steps(range(3), "quick")) == [0, 1, 2]
    with progress.step("quick step"):
        pass
    assert capsys.readouterr().err == ""


def test_slow_work_logs_a_line_per_step(capsys, monkeypatch):
    monkeypatch.setattr(progress, "QUIET_SECONDS", 0.0)
    assert list(progress.steps(["a", "b"], "sensitivity", unit="layers")) == ["a", "b"]
    with progress.step("loading cifar10 train"):
        pass
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(" (")[0] for line in lines[:2]] == ["sensitivity: 1/2 layers", "sensitivity: 2/2 layers"]
    assert lines[2].startswith("loading cifar10 train: ") and lines[2].endswith(" s")


def test_a_failed_step_reports_nothing_and_other_ranks_stay_silent(capsys, monkeypatch):
    monkeypatch.setattr(progress, "QUIET_SECONDS", 0.0)
    with pytest.raises(ValueError), progress.step("loading"):
        raise ValueError("bad")
    monkeypatch.setenv("RANK", "1")
    list(progress.steps(range(2), "x"))
    assert capsys.readouterr().err == ""
