from deepshrink.cli import main
from deepshrink.codec import load_dsz


def test_short_demo_runs_the_whole_pipeline_and_prints_the_stage_table(tmp_path, capsys):
    (tmp_path / "09-stale").mkdir()  # a previous run's stage folder: replaced
    (tmp_path / "notes").mkdir()     # anything else: kept
    assert main(["demo", "--out", str(tmp_path), "--epochs", "1"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == ("digits-cnn on scikit-learn digits: 1437 train / 360 test images; "
                        "stages: train -> prune -> quantize -> encode")
    assert lines[1].split()[:4] == ["stage", "top-1", "bytes", "ratio"]
    assert [line.split()[0] for line in lines[2:7]] == ["00-model", "01-train", "02-prune", "03-quantize", "04-encode"]
    dsz = tmp_path / "04-encode/model.dsz"
    assert f"decoded {dsz}: test top-1" in out and "equals the quantized model's" in out
    assert "(outputs bit-identical)" in out
    size = dsz.stat().st_size
    assert f"-> .dsz {size:,} bytes" in out
    ratio = float(lines[2 + 4].split()[3].rstrip("x"))
    assert ratio > 5  # 80 % of the hidden weights pruned, 4-bit codebooks, Huffman: every byte counted
    model, info = load_dsz(dsz)
    assert info.arch.name == "digits-cnn" and info.dataset == "digits"
    assert (tmp_path / "report.md").is_file() and (tmp_path / "report.html").is_file()
    assert not (tmp_path / "09-stale").exists() and (tmp_path / "notes").is_dir()


def test_demo_epochs_cap_every_training_stage(tmp_path):
    from deepshrink.pipeline.demo import demo_recipe

    recipe = demo_recipe(tmp_path, epochs=1)
    assert recipe.out == tmp_path
    assert all(stage.train is None or stage.train.epochs <= 1 for stage in recipe.stages)
    prune = next(stage for stage in recipe.stages if stage.kind == "prune")
    assert prune.settings.prune_epochs is None and "prune_epochs" not in prune.options
