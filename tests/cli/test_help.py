"""``--help`` lists every option's default and shows descriptions as plain text; ``--version``."""

import re

import pytest

import deepshrink
from deepshrink.cli import build_parser, main

TRAINING_FLAGS = ("--lr", "--batch-size", "--momentum", "--weight-decay", "--seed", "--device", "--threads")


def _help(capsys, *argv) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def _option_help(text: str, flag: str) -> str:
    """The help of ``flag``: its line and the indented lines after it."""
    match = re.search(rf"^  {re.escape(flag)}\b.*(?:\n {{8,}}.*)*", text, re.M)
    assert match, f"{flag} not in --help"
    return " ".join(match.group(0).split())


@pytest.mark.parametrize("command,flags", [
    ("train", ("--epochs", *TRAINING_FLAGS)),
    ("prune", ("--epochs", *TRAINING_FLAGS)),
    ("quantize", ("--finetune-epochs", *TRAINING_FLAGS)),
    ("eval", ("--batch-size", "--device", "--threads")),
    ("early-exit-sweep", ("--batch-size", "--device", "--threads")),
])
def test_help_lists_defaults(capsys, command, flags):
    text = _help(capsys, command)
    for flag in flags:
        assert "default" in _option_help(text, flag), flag
    if command == "prune":
        assert "(default: 0.0005)" in _option_help(text, "--weight-decay")
        assert "(default: 0)" in _option_help(text, "--epochs")


def test_descriptions_are_plain_text(capsys):
    for command in build_parser()._subparsers._group_actions[0].choices:
        assert "``" not in _help(capsys, command), command


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"deepshrink {deepshrink.__version__}"
