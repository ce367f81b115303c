"""``deepshrink sparse-opt``: JSON of every method and setting, plots, user data, mistakes."""

import json

import numpy as np
import pytest

from deepshrink.cli import main


def test_json_maps_every_method_and_setting_to_final_w_and_l(capsys):
    assert main(["sparse-opt", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    expected = {"gd", "projected/k=2"} | {f"l1/lambda={v}" for v in ("0.2", "0.5", "1", "2")} \
        | {f"proximal/threshold={v}" for v in ("0.004", "0.01", "0.02", "0.04")} \
        | {f"trimmed_l1/lambda={v},k=2" for v in ("1", "2", "5", "10")}
    assert set(result) == expected
    assert result["projected/k=2"]["W"] == pytest.approx([0, -3, 0, 0, 1], abs=1e-9)
    assert all(set(entry) == {"W", "L"} and len(entry["W"]) == 5 for entry in result.values())


def test_text_output_and_plots(tmp_path, capsys):
    assert main(["sparse-opt", "--out", str(tmp_path), "--steps", "20"]) == 0
    out = capsys.readouterr().out
    assert "proximal/threshold=0.04" in out and "L = " in out
    for name in ("loss.png", "weights.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_user_data_and_k(tmp_path, capsys):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 6))
    y = X @ np.array([0.0, 2.0, 0.0, 0.0, -1.0, 0.0])
    np.savez(tmp_path / "d.npz", X=X, y=y)
    assert main(["sparse-opt", "--data", str(tmp_path / "d.npz"), "--k", "2", "--lr", "0.01", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["projected/k=2"]["W"] == pytest.approx([0, 2, 0, 0, -1, 0], abs=1e-6)


@pytest.mark.parametrize("argv,needle", [
    (["--k", "6"], "k must"),
    (["--data", "nowhere.csv"], "no such data file"),
    (["--steps", "0"], "out of range"),
])
def test_mistakes_exit_2_with_one_line(capsys, argv, needle):
    try:
        code = main(["sparse-opt", *argv])
    except SystemExit as exc:  # argparse errors exit directly
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and needle in err and err.count("\n") == 1
