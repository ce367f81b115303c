"""Issue 25 item 7: the same option means the same thing in every command."""

import json

import pytest

from deepshrink.cli import main

TRAIN = ["train", "--model", "digits-cnn", "--data", "synthetic", "--epochs", "1", "--batch-size", "32",
         "--lr", "0.05", "--limit-train", "64", "--limit-test", "32", "--device", "cpu", "--threads", "1"]


def _code(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("trained")
    assert main(TRAIN + ["--out", str(out)]) == 0
    return out


# ---------------------------------------------------------------- eval --limit-test (7a)
@pytest.mark.parametrize("flag", ["--limit-test", "--limit"])
def test_eval_takes_limit_test_and_keeps_limit(trained, capsys, flag):
    code, out, _ = _code(["eval", trained / "model.safetensors", "--data", "synthetic", flag, "40",
                          "--device", "cpu", "--json"], capsys)
    assert code == 0 and json.loads(out)["examples"] == 40


def test_early_exit_sweep_and_eval_help_name_limit_test(capsys):
    for command in ("eval", "early-exit-sweep"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "--limit-test N" in capsys.readouterr().out


# ---------------------------------------------------------------- recipe out vs run --out (7b)
RECIPE = ("name: t\n{out}data: {{name: synthetic, limit_train: 64, limit_test: 32}}\n"
          "model: {{zoo: digits-cnn}}\ndevice: cpu\nthreads: 1\n"
          "stages:\n  - train: {{epochs: 1, batch_size: 32, lr: 0.05}}\n")


def test_a_recipe_without_out_runs_with_run_out(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE.format(out=""))
    code, out, err = _code(["run", recipe, "--out", tmp_path / "run"], capsys)
    assert code == 0, err
    assert (tmp_path / "run").is_dir() and "report written to" in out


def test_a_recipe_without_out_and_no_run_out_names_both(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE.format(out=""))
    code, out, err = _code(["run", recipe], capsys)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert "missing required key 'out'" in lines[0] and "--out DIR" in lines[0]


def test_run_out_still_overrides_the_recipe_out(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE.format(out=f"out: {tmp_path / 'unused'}\n"))
    code, _, err = _code(["run", recipe, "--out", tmp_path / "run"], capsys)
    assert code == 0, err
    assert (tmp_path / "run").is_dir() and not (tmp_path / "unused").exists()


# ---------------------------------------------------------------- train --out into a run (7c)
def test_train_into_an_existing_run_is_refused_without_resume(trained, capsys):
    before = (trained / "metrics.jsonl").read_bytes()
    code, out, err = _code(TRAIN + ["--out", trained], capsys)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "already holds a run" in lines[0] and "--resume" in lines[0]
    assert (trained / "metrics.jsonl").read_bytes() == before  # nothing touched


@pytest.mark.parametrize("name", ["last.ckpt", "metrics.jsonl"])
def test_either_file_marks_a_run(tmp_path, capsys, name):
    (tmp_path / name).write_text("")
    code, _, err = _code(TRAIN + ["--out", tmp_path], capsys)
    assert code == 2 and "--resume" in err


def test_train_into_an_empty_or_unrelated_folder_still_works(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    code, _, err = _code(TRAIN + ["--out", tmp_path], capsys)
    assert code == 0, err
    assert (tmp_path / "model.safetensors").is_file() and (tmp_path / "notes.txt").read_text() == "mine"
