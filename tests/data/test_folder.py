"""Image-folder datasets: layouts, decoding (resize + centre crop, modes), the cache and the errors."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deepshrink.data import FolderSource, folder, folder_cache, load_dataset
from deepshrink.data.folder import channel_stats, decode_image, load_folder
from deepshrink.errors import ConfigError, UserError

COLOURS = {"cat": (200, 30, 30), "dog": (30, 200, 30), "emu": (30, 30, 200)}


def save(path: Path, size=(24, 20), colour=(128, 128, 128), mode="RGB", fmt=None) -> Path:
    """A solid image of ``colour`` (converted to ``mode``) at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).convert(mode).save(path, format=fmt)
    return path


def make_tree(root: Path, per_class: int = 5, classes=("cat", "dog", "emu")) -> Path:
    """A class-coloured tree of PNG and JPEG images of different sizes."""
    for c in classes:
        for i in range(per_class):
            ext = "png" if i % 2 else "jpg"
            save(root / c / f"{i}.{ext}", size=(16 + 3 * i, 12 + 5 * i), colour=COLOURS[c])
    return root


def source(root: Path, tmp_path: Path, **options) -> FolderSource:
    return FolderSource(root, image_size=8, cache_dir=tmp_path / "cache", **options)


def test_decode_resizes_the_shorter_side_and_crops_the_centre(tmp_path):
    image = np.zeros((20, 60, 3), dtype=np.uint8)
    image[:, :20] = (255, 0, 0)
    image[:, 20:40] = (0, 255, 0)  # the centred 20x20 square
    image[:, 40:] = (0, 0, 255)
    Image.fromarray(image).save(tmp_path / "wide.png")
    out = decode_image(tmp_path / "wide.png", 10)
    assert out.shape == (3, 10, 10) and out.dtype == np.uint8
    assert (out[1] == 255).all() and (out[0] == 0).all() and (out[2] == 0).all()
    tall = np.zeros((40, 10, 3), dtype=np.uint8)
    tall[15:25] = 255
    Image.fromarray(tall).save(tmp_path / "tall.png")
    assert (decode_image(tmp_path / "tall.png", 5) == 255).all()
    assert decode_image(tmp_path / "wide.png", 64).shape == (3, 64, 64)  # upscaled too


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "1", "CMYK"])
def test_decode_converts_every_mode_to_rgb(tmp_path, mode):
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    path = save(tmp_path / f"x.{fmt.lower()}", (9, 7), (255, 255, 255) if mode == "1" else (90, 90, 90), mode, fmt)
    out = decode_image(path, 4)
    assert out.shape == (3, 4, 4)
    assert np.ptp(out.astype(int), axis=0).max() <= 2  # grey stays grey in all three channels
    if mode == "1":
        assert (out == 255).all()


def test_decode_applies_the_exif_orientation(tmp_path):
    image = Image.new("RGB", (30, 10), (0, 0, 0))
    image.paste((255, 255, 255), (0, 0, 10, 10))  # white at the left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    image.save(tmp_path / "r.jpg", exif=exif, quality=95)
    out = decode_image(tmp_path / "r.jpg", 10)  # displayed 10x30: the centre square is black
    assert out.mean() < 30


def test_split_tree_train_and_test(tmp_path):
    root = make_tree(tmp_path / "tree", per_class=5)
    train = load_dataset(source(root, tmp_path), "train")
    test = load_dataset(source(root, tmp_path), "test")
    assert train.name == test.name == "folder:tree" and train.classes == ("cat", "dog", "emu")
    assert len(train) == 12 and len(test) == 3  # round(5 * 0.2) = 1 of each class to test
    assert sorted(test.labels.tolist()) == [0, 1, 2] and train.image_shape == (3, 8, 8)
    for dataset in (train, test):  # each image is its class's colour (JPEG: nearly)
        for image, label in zip(dataset.images, dataset.labels):
            colour = np.array(COLOURS[dataset.classes[label]])
            assert np.abs(image.numpy().reshape(3, -1).mean(1) - colour).max() < 6
    assert train.labels[:3].tolist() != [0, 0, 0] or train.labels[3:6].tolist() != [0, 0, 0]  # shuffled
    other = load_dataset(source(root, tmp_path, split_seed=1, test_fraction=0.4), "test")
    assert len(other) == 6


def test_split_is_stable_when_images_are_added(tmp_path):
    root = make_tree(tmp_path / "tree", per_class=10)
    before = folder.scan(source(root, tmp_path), "test")[2]
    save(root / "cat" / "new.png", colour=COLOURS["cat"])
    after = folder.scan(source(root, tmp_path), "test")[2]
    assert len(set(before) - set(after)) <= 1


@pytest.mark.parametrize("test_name", ["val", "test"])
def test_train_and_val_layout(tmp_path, test_name):
    make_tree(tmp_path / "t" / "train", per_class=3, classes=("cat", "dog"))
    make_tree(tmp_path / "t" / test_name, per_class=2, classes=("cat", "dog"))
    (tmp_path / "t" / "README.txt").write_text("loose files at the top are ignored")
    (tmp_path / "t" / "train" / "cat" / ".DS_Store").write_text("hidden files are ignored")
    assert len(load_dataset(source(tmp_path / "t", tmp_path), "train")) == 6
    assert len(load_dataset(source(tmp_path / "t", tmp_path), "test")) == 4


def test_mean_and_std_are_measured_on_the_split(tmp_path):
    root = make_tree(tmp_path / "tree")
    train = load_dataset(source(root, tmp_path), "train")
    pixels = train.images.numpy().astype(np.float64) / 255
    assert np.allclose(train.mean, pixels.mean(axis=(0, 2, 3)))
    assert np.allclose(train.std, pixels.std(axis=(0, 2, 3)))
    assert channel_stats(np.full((2, 1, 3, 3), 7, np.uint8))[1] == (1 / 255,)  # a constant image: std > 0


def test_second_load_reads_the_cache_without_decoding(tmp_path, monkeypatch):
    root = make_tree(tmp_path / "tree")
    first = load_dataset(source(root, tmp_path), "train")
    files = list((tmp_path / "cache").glob("*.npz"))
    assert len(files) == 1 and "-train-8px-" in files[0].name

    def no_decoding(path, size):
        raise AssertionError(f"decoded {path} again")

    monkeypatch.setattr(folder, "decode_image", no_decoding)
    second = load_dataset(source(root, tmp_path), "train")
    assert second.images.equal(first.images) and second.labels.equal(first.labels)
    assert second.mean == first.mean
    with np.load(files[0], allow_pickle=False) as stored:  # no object arrays
        assert all(stored[name].dtype != object for name in stored.files)


def test_a_changed_file_invalidates_the_cache(tmp_path, monkeypatch):
    root = make_tree(tmp_path / "tree")
    load_dataset(source(root, tmp_path), "train")
    decoded = []
    real = folder.decode_image
    monkeypatch.setattr(folder, "decode_image", lambda path, size: decoded.append(path) or real(path, size))
    changed = next(p for p in sorted((root / "dog").iterdir()) if p.suffix == ".png")
    save(changed, size=(40, 40), colour=(0, 0, 0))
    os.utime(changed, ns=(1, 1))
    dataset = load_dataset(source(root, tmp_path), "train")
    assert len(decoded) == 12
    assert len(list((tmp_path / "cache").glob("*-train-*.npz"))) == 1  # the stale entry is gone
    assert (dataset.images.reshape(len(dataset), -1).float().mean(1) < 1).sum() <= 1
    decoded.clear()
    load_dataset(FolderSource(root, image_size=9, cache_dir=tmp_path / "cache"), "train")
    assert len(decoded) == 12  # another size is another entry


def test_a_damaged_cache_file_is_a_miss(tmp_path):
    root = make_tree(tmp_path / "tree")
    first = load_dataset(source(root, tmp_path), "train")
    (cached,) = (tmp_path / "cache").glob("*.npz")
    cached.write_bytes(b"not a zip")
    assert load_dataset(source(root, tmp_path), "train").images.equal(first.images)


def test_an_unwritable_cache_is_reported_not_fatal(tmp_path, capsys):
    root = make_tree(tmp_path / "tree")
    (tmp_path / "file").write_text("")
    dataset = load_dataset(FolderSource(root, image_size=8, cache_dir=tmp_path / "file" / "sub"), "train")
    assert len(dataset) == 12 and "could not write the image cache" in capsys.readouterr().err


def test_default_cache_dir_follows_xdg(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert folder_cache.cache_dir(FolderSource(tmp_path)) == tmp_path / "xdg" / "deepshrink"


def bad_tree(tmp_path: Path) -> Path:
    """train/ (3 classes of 4, plus a text file and a truncated PNG) and val/ (1 per class)."""
    root = tmp_path / "tree"
    make_tree(root / "train", per_class=4)
    make_tree(root / "val", per_class=1)
    (root / "train" / "dog" / "notes.txt").write_text("not an image")
    data = (root / "train" / "cat" / "1.png").read_bytes()
    (root / "train" / "cat" / "broken.png").write_bytes(data[: len(data) // 2])
    return root


def test_an_unreadable_file_is_an_error_naming_it(tmp_path):
    root = bad_tree(tmp_path)
    with pytest.raises(UserError, match=r"train/(dog/notes\.txt|cat/broken\.png) is not a readable image"):
        load_dataset(source(root, tmp_path), "train")
    assert not list((tmp_path / "cache").glob("*.npz"))


def test_unreadable_files_are_skipped_and_counted(tmp_path, capsys, monkeypatch):
    root = bad_tree(tmp_path)
    assert len(load_dataset(source(root, tmp_path, skip_bad_images=True), "train")) == 12
    err = capsys.readouterr().err
    assert "folder:tree train: skipped 2 unreadable files in" in err
    assert "cat/broken.png" in err and "dog/notes.txt" in err
    monkeypatch.setattr(folder, "decode_image", lambda path, size: pytest.fail("decoded"))
    assert len(load_dataset(source(root, tmp_path, skip_bad_images=True), "train")) == 12
    assert "skipped 2 unreadable files" in capsys.readouterr().err  # from the cache, still counted
    with pytest.raises(UserError, match="is not a readable image"):  # cached, but not skipping: an error
        load_dataset(source(root, tmp_path), "train")


def test_a_class_left_empty_by_skipping_is_an_error(tmp_path):
    make_tree(tmp_path / "t" / "train", per_class=2, classes=("cat", "dog"))
    make_tree(tmp_path / "t" / "val", per_class=1, classes=("cat",))
    (tmp_path / "t" / "val" / "dog").mkdir()
    (tmp_path / "t" / "val" / "dog" / "x.jpg").write_text("no")
    with pytest.raises(UserError, match="no readable images in class folder dog"):
        load_dataset(source(tmp_path / "t", tmp_path, skip_bad_images=True), "test")


@pytest.mark.parametrize("layout, message", [
    ({"cat": 2}, "found only the class 'cat'; an image folder needs one subfolder per class, at least 2"),
    ({}, "found no class subfolders"),
    ({"cat": 2, "dog": 0, "emu": 0}, "empty class folders: dog, emu"),
    ({"train/cat": 1, "train/dog": 1, "val/cat": 1, "val/emu": 1},
     "train/ and val/ have different classes: only in train/: dog; only in val/: emu"),
    ({"train/cat": 1, "train/dog": 1}, "has train/ but no val/ or test/ beside it"),
])
def test_bad_trees_are_one_line_errors(tmp_path, layout, message):
    root = tmp_path / "tree"
    root.mkdir()
    for name, count in layout.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            save(root / name / f"{i}.png")
    with pytest.raises(UserError, match=message) as info:
        load_dataset(source(root, tmp_path), "train")
    assert "\n" not in str(info.value)


def test_source_checks_its_fields(tmp_path):
    with pytest.raises(ConfigError, match="FolderSource.image_size must be an integer >= 1"):
        FolderSource(tmp_path, image_size=0)
    with pytest.raises(ConfigError, match=r"FolderSource.test_fraction must be in \(0, 1\)"):
        FolderSource(tmp_path, test_fraction=1.0)
    with pytest.raises(UserError, match="no such folder"):
        load_dataset(f"folder:{tmp_path / 'missing'}", "train")
    with pytest.raises(UserError, match="unknown split"):
        load_folder(FolderSource(tmp_path), "val")
