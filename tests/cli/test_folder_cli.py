"""``--data folder:DIR`` from the command line and in recipes: train, prune, quantize, eval."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deepshrink.cli import main
from deepshrink.data import FolderSource, load_dataset
from deepshrink.models import load_model

COLOURS = {"red": (220, 40, 40), "green": (40, 220, 40), "blue": (40, 40, 220)}


def make_tree(root: Path, per_class: int = 6) -> Path:
    """Three colour classes of noisy images of different sizes, PNG and JPEG, one RGBA and one
    grayscale image among them."""
    rng = np.random.default_rng(0)
    for name, colour in COLOURS.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = np.clip(rng.normal(colour, 20, (18 + 2 * i, 22 + i, 3)), 0, 255).astype(np.uint8)
            image = Image.fromarray(pixels)
            if i == 1:
                image = image.convert("RGBA")
            if i == 2 and name == "green":
                image = image.convert("L")
            image.save(root / name / f"{i}.{'jpg' if i % 3 == 0 else 'png'}")
    return root


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return make_tree(tmp_path_factory.mktemp("images") / "colours")


def _code(argv) -> int:
    try:
        return main([str(a) for a in argv])
    except SystemExit as exc:  # argparse errors exit directly
        return exc.code


def test_train_prune_quantize_eval_on_a_folder(tree, tmp_path, capsys):
    data = ["--data", f"folder:{tree}", "--image-size", "16", "--cache-dir", tmp_path / "cache"]
    assert _code(["train", "--model", "lenet5", *data, "--epochs", "1", "--batch-size", "4",
                  "--device", "cpu", "--out", tmp_path / "run"]) == 0
    model_file = tmp_path / "run" / "model.safetensors"
    _, info = load_model(model_file)
    train = load_dataset(FolderSource(tree, image_size=16, cache_dir=tmp_path / "cache"), "train")
    assert info.dataset == "folder:colours" and info.classes == ["blue", "green", "red"]
    assert tuple(info.input.shape) == (3, 16, 16)
    assert np.allclose(info.input.mean, train.mean) and np.allclose(info.input.std, train.std)
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 2
    capsys.readouterr()
    steps = [
        ["prune", model_file, "--sparsity", "0.5", "--epochs", "1", *data, "--out", tmp_path / "p.safetensors"],
        ["prune", model_file, "--structured", "--ratio", "0.3", *data, "--out", tmp_path / "s.safetensors"],
        ["quantize", tmp_path / "p.safetensors", "--method", "linear", "--bits", "4", "--finetune-epochs", "1",
         *data, "--out", tmp_path / "q.safetensors"],
        ["eval", tmp_path / "q.safetensors", *data],
    ]
    for argv in steps:
        assert _code(argv) == 0, capsys.readouterr().err
    assert "on folder:colours test (3 images): top-1" in capsys.readouterr().out


def test_a_recipe_reads_a_folder(tree, tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: colours\nout: run\n"
                      f"data: {{folder: {tree}, image_size: 16, cache_dir: cache, test_fraction: 0.5}}\n"
                      "model: {zoo: lenet5}\nstages:\n  - train: {epochs: 1, batch_size: 4}\n"
                      "  - quantize: {method: linear, bits: 8}\n")
    assert _code(["run", recipe, "--out", tmp_path / "run"]) == 0, capsys.readouterr().err
    capsys.readouterr()
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 2  # relative to the recipe
    bad = tmp_path / "bad.yaml"
    bad.write_text(recipe.read_text().replace("image_size: 16", "image_size: 0"))
    assert _code(["run", bad]) == 2
    assert "line 3: data.image_size: must be an integer >= 1, got 0" in capsys.readouterr().err
    bad.write_text(recipe.read_text().replace("{folder:", "{name: digits, folder:"))
    assert _code(["run", bad]) == 2
    assert "give exactly one of name (a dataset) and folder" in capsys.readouterr().err
    bad.write_text(recipe.read_text().replace(f"folder: {tree}, ", "name: digits, "))
    assert _code(["run", bad]) == 2
    assert "data.image_size: applies only to data: {folder: DIR}" in capsys.readouterr().err


def _one_line_error(capsys, argv) -> str:
    assert _code(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err


def test_bad_trees_exit_2_with_one_line(tmp_path, capsys):
    one = tmp_path / "one"
    make_tree(one, per_class=2)
    for name in ("green", "blue"):
        for path in (one / name).iterdir():
            path.unlink()
        (one / name).rmdir()
    train = ["train", "--model", "lenet5", "--image-size", "16", "--cache-dir", tmp_path / "c", "--epochs", "1",
             "--out", tmp_path / "o"]
    assert "found only the class 'red'" in _one_line_error(capsys, [*train, "--data", f"folder:{one}"])
    (one / "green").mkdir()
    assert "empty class folder: green" in _one_line_error(capsys, [*train, "--data", f"folder:{one}"])
    split = tmp_path / "split"
    make_tree(split / "train", per_class=2)
    make_tree(split / "test", per_class=1)
    (split / "test" / "red").rename(split / "test" / "crimson")
    err = _one_line_error(capsys, [*train, "--data", f"folder:{split}"])
    assert "train/ and test/ have different classes: only in train/: red; only in test/: crimson" in err
    assert "no such folder" in _one_line_error(capsys, [*train, "--data", f"folder:{tmp_path / 'nope'}"])


def test_bad_images_are_named_or_skipped(tmp_path, capsys):
    root = make_tree(tmp_path / "imgs", per_class=4)
    (root / "blue" / "x.png").write_text("not a png")
    train = ["train", "--model", "lenet5", "--data", f"folder:{root}", "--image-size", "16", "--cache-dir",
             tmp_path / "c", "--epochs", "1", "--batch-size", "4", "--device", "cpu", "--out", tmp_path / "o"]
    assert "blue/x.png is not a readable image" in _one_line_error(capsys, train)
    assert _code([*train, "--skip-bad-images"]) == 0
    assert "skipped 1 unreadable file in" in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["--data", "digits", "--image-size", "16"], "--image-size: only with --data folder:DIR"),
    (["--data", "digits", "--skip-bad-images", "--cache-dir", "c"], "--cache-dir, --skip-bad-images: only with"),
    (["--data", "folder:x", "--test-fraction", "1"], "--test-fraction must be in (0, 1), got 1.0"),
    (["--data", "folder:"], "invalid choice: 'folder:'"),
    (["--data", "imagenet"], "or folder:DIR for your own images"),
])
def test_folder_flags_are_checked(tmp_path, capsys, extra, message):
    assert message in _one_line_error(capsys, ["eval", tmp_path / "m.safetensors", *extra])


def test_eval_names_the_image_size_when_it_differs(tree, tmp_path, capsys):
    data = ["--data", f"folder:{tree}", "--cache-dir", tmp_path / "cache"]
    assert _code(["train", "--model", "lenet5", *data, "--image-size", "16", "--epochs", "0",
                  "--out", tmp_path / "run"]) == 0
    capsys.readouterr()
    err = _one_line_error(capsys, ["eval", tmp_path / "run" / "model.safetensors", *data])
    assert "--image-size is 32 but the model expects 3x16x16 images" in err
