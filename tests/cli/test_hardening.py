"""Hostile and broken inputs (issue 24): each is one line on stderr and exit code 2, with bounded
memory and time, and nothing half-written."""

from __future__ import annotations

import pytest

from deepshrink.cli import main
from deepshrink.errors import UserError
from deepshrink.pipeline.recipe import load_recipe, parse_recipe

BILLION_LAUGHS = """name: x
stages: &f [&e [&d [&c [&b [&a [x, x, x, x, x, x, x, x, x], *a, *a, *a, *a, *a, *a, *a, *a], *b, *b, *b, *b, *b, *b, *b, *b],
  *c, *c, *c, *c, *c, *c, *c, *c], *d, *d, *d, *d, *d, *d, *d, *d], *e, *e, *e, *e, *e, *e, *e, *e, *e]
"""


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


# --- recipes -------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, message", [
    (BILLION_LAUGHS, "line 2: anchors and aliases"),
    ("name: &x [*x]\n", "line 1: anchors and aliases"),
    ("name: x\nout: &o runs\n", "line 2: anchors and aliases"),
    ("name: " + "[" * 5000 + "]" * 5000 + "\n", "nested deeper than"),
    ("name:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 200)), "nested deeper than"),
    ("stages: [" + "1, " * 20_000 + "]\n", "more than 10000 values"),
])
def test_recipe_bombs_are_refused_before_they_grow(text, message):
    with pytest.raises(UserError, match=message.replace("[", r"\[")):
        parse_recipe(text, source="bomb.yaml")


def test_huge_recipe_is_refused_without_reading_it_all(tmp_path, capsys):
    big = tmp_path / "big.yaml"
    with open(big, "w") as handle:
        handle.write("stages:\n")
        handle.write("  # padding\n" * 200_000)
    assert main(["run", str(big)]) == 2
    assert "larger than 1 MB" in _one_error_line(capsys)
    with pytest.raises(UserError, match="larger than 1 MB"):
        load_recipe("/dev/zero")


def test_recipe_bomb_through_the_command_line(tmp_path, capsys):
    path = tmp_path / "bomb.yaml"
    path.write_text(BILLION_LAUGHS)
    assert main(["run", str(path)]) == 2
    assert "anchors and aliases" in _one_error_line(capsys)


# --- non-finite training settings ----------------------------------------------------------------

@pytest.mark.parametrize("flag", ["--lr", "--weight-decay", "--gamma", "--warmup-epochs"])
def test_train_refuses_infinite_settings_naming_the_flag(flag, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--model", "digits-cnn", "--data", "synthetic", "--out", str(out), "--epochs", "1",
                 flag, "inf"]) == 2
    assert _one_error_line(capsys).startswith(f"deepshrink: error: {flag} must be a finite number")
    assert not out.exists()


def test_recipe_names_the_key_of_an_infinite_learning_rate(tmp_path):
    text = "name: x\nout: runs\ndata: {name: synthetic}\nmodel: {zoo: digits-cnn}\nstages:\n  - train: {epochs: 1, lr: .inf}\n"
    with pytest.raises(UserError, match=r"line 6: stages\[0\]\.train\.lr: must be a finite number > 0, got inf"):
        parse_recipe(text, source="r.yaml")
