import json
import os

import pytest
import torch

from deepshrink.codec import float32_size
from deepshrink.errors import UserError
from deepshrink.models import load_model
from deepshrink.pipeline.recipe import parse_recipe
from deepshrink.pipeline.run_folder import read_records
from deepshrink.pipeline.runner import run_recipe

RECIPE = """name: tiny
out: unused
data: {name: synthetic, limit_train: 128, limit_test: 64}
model: {zoo: digits-cnn}
threads: 1
stages:
  - train: {epochs: 2, batch_size: 32, lr: 0.05}
  - prune: {amount: 0.6, exclude: [fc], exclude_first_last: false, epochs: 1, batch_size: 32, lr: 0.01}
  - train: {epochs: 1, batch_size: 32, lr: 0.005, distill: {teacher: original, temperature: 2, alpha: 0.5}}
  - quantize: {method: kmeans, bits: 3, exclude_first_last: false, epochs: 1, batch_size: 32, lr: 0.001,
               distill: {teacher: previous, temperature: 3}}
  - encode: {}
"""
FOLDERS = ["00-model", "01-train", "02-prune", "03-train", "04-quantize", "05-encode"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    return run_recipe(parse_recipe(RECIPE), out=out, progress=False)


def test_stages_write_their_folders_and_measurements(run):
    assert [r.folder for r in run.stages] == FOLDERS and run.resumed == []
    baseline = float32_size(load_model(run.out / "00-model/model.safetensors")[1].arch)
    for record in run.stages:
        assert (run.out / record.folder / "stage.json").is_file()
        artefact = run.out / record.artefact
        assert record.bytes == artefact.stat().st_size
        assert record.ratio == pytest.approx(baseline / record.bytes)
        assert 0.0 <= record.top1 <= 1.0 and record.latency_ms > 0
    assert run.stages[0].details["float32_bytes"] == baseline
    assert (run.out / "01-train/train/metrics.jsonl").is_file()


def test_prune_distill_and_encode_stages(run):
    prune, distill, quantize, encode = run.stages[2:]
    assert prune.details["sparsity"] == pytest.approx(0.6, abs=0.01)
    assert distill.details["teacher"] == "01-train/model.safetensors"  # the model before the first pruning
    _, info = load_model(run.out / distill.model)
    record = [h for h in info.history if h["stage"] == "distill"][-1]
    assert (record["temperature"], record["alpha"]) == (2.0, 0.5)
    assert quantize.details["teacher"] == "03-train/model.safetensors"  # codebook fine-tuning distils too
    _, info = load_model(run.out / quantize.model)
    assert [h for h in info.history if h["stage"] == "distill"][-1]["temperature"] == 3.0
    assert encode.artefact == "05-encode/model.dsz" and encode.details["identical_outputs"] is True
    assert encode.top1 == quantize.top1  # the decoded model scores exactly what the quantized one did
    assert encode.ratio > 4  # 60 % zeros and 3-bit codebooks: far smaller than float32


def test_resume_skips_finished_stages(run):
    threads = torch.get_num_threads()
    stamps = {p: p.stat().st_mtime_ns for p in run.out.glob("*/stage.json")}
    again = run_recipe(parse_recipe(RECIPE), out=run.out, resume=True, progress=False)
    assert again.resumed == list(range(len(FOLDERS)))  # lists such as prune.exclude compare equal after JSON
    assert {p: p.stat().st_mtime_ns for p in run.out.glob("*/stage.json")} == stamps
    assert [r.to_dict() for r in again.stages] == [r.to_dict() for r in read_records(run.out)]
    assert torch.get_num_threads() == threads  # the recipe's threads: 1 applied only during the run


def test_resume_redoes_an_unfinished_stage(run):
    (run.out / "05-encode/stage.json").unlink()
    before = (run.out / "04-quantize/stage.json").stat().st_mtime_ns
    again = run_recipe(parse_recipe(RECIPE), out=run.out, resume=True, progress=False)
    assert again.resumed == [0, 1, 2, 3, 4]
    assert (run.out / "05-encode/stage.json").is_file()
    assert (run.out / "04-quantize/stage.json").stat().st_mtime_ns == before


def test_resume_continues_training_from_its_checkpoint_and_redoes_what_follows(run):
    (run.out / "03-train/stage.json").unlink()
    (run.out / "03-train/model.safetensors").unlink()
    metrics = (run.out / "03-train/train/metrics.jsonl").read_text()
    later = (run.out / "05-encode/stage.json").stat().st_mtime_ns
    again = run_recipe(parse_recipe(RECIPE), out=run.out, resume=True, progress=False)
    assert again.resumed == [0, 1, 2]
    assert (run.out / "03-train/train/metrics.jsonl").read_text() == metrics  # its one epoch was not trained again
    assert (run.out / "05-encode/stage.json").stat().st_mtime_ns != later
    assert again.stages[-1].details["identical_outputs"] is True


def test_an_existing_run_needs_resume_and_the_same_settings(run):
    with pytest.raises(UserError, match="already holds a run: give --resume"):
        run_recipe(parse_recipe(RECIPE), out=run.out)
    changed = RECIPE.replace("amount: 0.6", "amount: 0.5")
    with pytest.raises(UserError, match="02-prune was run with other settings"):
        run_recipe(parse_recipe(changed), out=run.out, resume=True)


def test_missing_input_files_fail_before_anything_runs(tmp_path):
    recipe = parse_recipe(RECIPE.replace("{zoo: digits-cnn}", "{file: nowhere.safetensors}")
                          .replace("  - train: {epochs: 2, batch_size: 32, lr: 0.05}\n", ""), base_dir=tmp_path)
    with pytest.raises(UserError, match="model.file: .*nowhere.safetensors does not exist"):
        run_recipe(recipe, out=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_run_command(tmp_path, capsys):
    from deepshrink.cli import main

    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE.replace("epochs: 2,", "epochs: 1,"))
    assert main(["run", str(recipe), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "05-encode" in out and "report written to" in out
    assert main(["run", str(recipe), "--out", str(tmp_path / "out")]) == 2
    recipe.write_text("name: x\nout: 3\n")
    assert main(["run", str(recipe)]) == 2
    assert "line 2: out: must be a non-empty string" in capsys.readouterr().err
    records = json.loads((tmp_path / "out/05-encode/stage.json").read_text())
    assert os.path.isfile(tmp_path / "out" / records["artefact"])


def test_structured_pruning_float16_encoding_and_export(tmp_path):
    recipe = parse_recipe("""name: st
out: unused
data: {name: synthetic, limit_train: 64, limit_test: 64}
model: {zoo: digits-cnn}
threads: 1
stages:
  - train: {epochs: 0}
  - structured: {criterion: l1, ratio: 0.5}
  - encode: {float_dtype: float16}
  - export: {format: onnx}
""")
    _, _, structured, encode, export = run_recipe(recipe, out=tmp_path, progress=False).stages
    assert structured.details["macs_after"] < structured.details["macs_before"]
    assert structured.ratio > 2  # half the channels of each layer: a much smaller dense model file
    assert encode.details["identical_outputs"] is False  # float16 rounds BatchNorm and the weights
    assert export.artefact == "04-export/model.onnx" and export.model is None
    assert export.top1 == pytest.approx(encode.top1, abs=0.05)


def test_mixed_precision_quantize_stage_records_its_assignment(tmp_path):
    from deepshrink.data import load_dataset
    from deepshrink.models import build_model
    from deepshrink.pipeline.train import new_model_info
    from deepshrink.quant import QuantConfig, quantizers_of
    from deepshrink.quant.mixed import model_size_bytes

    layers = ("conv2", "conv3")  # digits-cnn's layers between the first and the last
    plain = build_model(new_model_info("digits-cnn", load_dataset("synthetic", "train")).arch)
    config = QuantConfig("linear", 8, per_channel=True)
    size = {bits: model_size_bytes(plain, dict.fromkeys(layers, bits), config) for bits in (2, 8)}
    budget_kb = (size[2] + size[8]) / 2 / 1024  # all at 8 bits does not fit, all at 2 bits does
    recipe = parse_recipe(f"""name: mixed
out: unused
data: {{name: synthetic, limit_train: 64, limit_test: 32}}
model: {{zoo: digits-cnn}}
threads: 1
stages:
  - train: {{epochs: 0}}
  - quantize: {{per_channel: true, mixed_budget_kb: {budget_kb}, mixed_bits: [8, 2], calibration_images: 32}}
""")
    quantize = run_recipe(recipe, out=tmp_path, progress=False).stages[-1]
    assignment = quantize.details["assignment"]
    assert sorted(assignment) == sorted(layers) and sorted(assignment.values()) == [2, 8]
    assert quantize.details["size_bytes"] <= quantize.details["budget_bytes"] == round(budget_kb * 1024)
    model, info = load_model(tmp_path / quantize.model)
    assert {name: q.bits for name, q in quantizers_of(model).items()} == assignment
    record = info.history[-1]
    assert record["assignment"] == assignment and record["calibration_images"] == 32 and "bits" not in record
    stage_json = json.loads((tmp_path / quantize.folder / "stage.json").read_text())
    assert stage_json["details"]["assignment"] == assignment
