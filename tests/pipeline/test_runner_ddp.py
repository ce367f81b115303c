"""`deepshrink run` under torchrun: 2 gloo ranks give the same run folder as 1 process (same
global batch), resume follows rank 0's decisions, and user errors end every rank with exit 2."""

import shutil
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from deepshrink.models import load_model
from deepshrink.pipeline.recipe import parse_recipe
from deepshrink.pipeline.run_folder import read_records
from deepshrink.pipeline.runner import run_recipe
from deepshrink.prune import masks_of
from deepshrink.quant import quantizers_of

# LeNet-5 (no BatchNorm, whose statistics are per process) without augmentation: 2 ranks of
# 32 images each take the same steps as 1 process with batches of 64.
RECIPE = """name: ddp
out: unused
data: {name: digits, limit_train: 640, limit_test: 200}
model: {zoo: lenet5}
threads: 1
device: cpu
stages:
  - train: {epochs: 1, batch_size: 64, lr: 0.1, augment: false}
  - prune: {amount: 0.6, epochs: 1, batch_size: 64, lr: 0.02, augment: false}
  - quantize: {method: kmeans, bits: 4, exclude_first_last: false, epochs: 1, batch_size: 64, lr: 0.01,
               augment: false}
  - encode: {}
"""
FOLDERS = ["00-model", "01-train", "02-prune", "03-quantize", "04-encode"]
MODELS = ["01-train/model.safetensors", "02-prune/model.safetensors", "03-quantize/model.safetensors",
          "04-encode/decoded.safetensors"]


@pytest.fixture(scope="module")
def run_recipe_on_two_ranks(torchrun):
    """``deepshrink run ARGS`` under torchrun with 2 ranks; must exit 0."""
    def run(*args: str):
        proc = torchrun("-m", "deepshrink", "run", *args)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc
    return run


def _files(folder) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def _assert_same_models(first, second, exact: bool) -> None:
    for name in MODELS:
        a, _ = load_model(first / name)
        b, _ = load_model(second / name)
        masks_a, masks_b = masks_of(a), masks_of(b)
        assert masks_a.keys() == masks_b.keys()
        for layer in masks_a:
            assert torch.equal(masks_a[layer], masks_b[layer]), (name, layer)
        quant_a, quant_b = quantizers_of(a), quantizers_of(b)
        assert quant_a.keys() == quant_b.keys()
        for layer in quant_a:  # the same k-means cluster of every weight
            assert torch.equal(quant_a[layer].indices, quant_b[layer].indices), (name, layer)
        state_a, state_b = a.state_dict(), b.state_dict()
        assert state_a.keys() == state_b.keys()
        for key in state_a:
            if exact:
                assert torch.equal(state_a[key], state_b[key]), (name, key)
            else:
                torch.testing.assert_close(state_a[key], state_b[key], rtol=1e-4, atol=1e-6, msg=f"{name} {key}")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, run_recipe_on_two_ranks):
    """The recipe run by 1 process (here) and by 2 ranks under torchrun."""
    root = tmp_path_factory.mktemp("runs")
    (root / "recipe.yaml").write_text(RECIPE)
    single = run_recipe(parse_recipe(RECIPE), out=root / "single", progress=False)
    proc = run_recipe_on_two_ranks(str(root / "recipe.yaml"), "--out", str(root / "ddp"))
    return root, single, proc


def test_two_ranks_write_the_same_run_as_one_process(runs):
    root, single, proc = runs
    ddp = root / "ddp"
    for folder in FOLDERS:  # only rank 0 prints
        assert proc.stdout.count(f"{folder}: done") == 1, proc.stdout
    assert proc.stdout.count("report written to") == 1
    assert _files(ddp) == _files(single.out)  # every stage's files, the training runs and the report
    assert [r.folder for r in read_records(ddp)] == FOLDERS
    assert (ddp / "00-model/model.safetensors").read_bytes() == (single.out / "00-model/model.safetensors").read_bytes()
    _assert_same_models(single.out, ddp, exact=False)
    trained = single.out / "01-train/model.safetensors"
    start = load_model(single.out / "00-model/model.safetensors")[0].state_dict()
    assert any(not torch.equal(w, start[k]) for k, w in load_model(trained)[0].state_dict().items())  # it trained
    sparsity = {r.folder: r.details.get("sparsity") for r in read_records(ddp)}
    assert sparsity["02-prune"] == pytest.approx(single.stages[2].details["sparsity"])
    assert read_records(ddp)[-1].details["identical_outputs"] is True


def test_resume_under_two_ranks_skips_what_rank_0_finds_finished(runs, tmp_path, run_recipe_on_two_ranks):
    root, _, _ = runs
    first, cut = root / "ddp", tmp_path / "cut"
    shutil.copytree(first, cut)
    # interrupted after the prune stage's fine-tuning checkpoint, before its model file and record
    (cut / "02-prune/stage.json").unlink()
    (cut / "02-prune/model.safetensors").unlink()
    metrics = (cut / "02-prune/train/metrics.jsonl").read_text()
    kept = {f: (cut / f / "stage.json").stat().st_mtime_ns for f in FOLDERS[:2]}
    proc = run_recipe_on_two_ranks(str(root / "recipe.yaml"), "--out", str(cut), "--resume")
    assert [proc.stdout.count(f"{f}: already finished") for f in FOLDERS] == [1, 1, 0, 0, 0], proc.stdout
    assert [proc.stdout.count(f"{f}: done") for f in FOLDERS] == [0, 0, 1, 1, 1]
    assert {f: (cut / f / "stage.json").stat().st_mtime_ns for f in FOLDERS[:2]} == kept
    assert (cut / "02-prune/train/metrics.jsonl").read_text() == metrics  # continued, not trained again
    _assert_same_models(first, cut, exact=True)


def test_user_errors_end_every_rank_with_exit_code_2(tmp_path, spawn_ranks):
    deepshrink = [sys.executable, "-m", "deepshrink", "run"]
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE)
    invalid = tmp_path / "invalid.yaml"
    invalid.write_text(RECIPE.replace("bits: 4", "bits: 9"))
    bad_model = tmp_path / "bad-model.yaml"
    (tmp_path / "bad.safetensors").write_bytes(b"not a model file")
    bad_model.write_text(RECIPE.replace("{zoo: lenet5}", "{file: bad.safetensors}")
                         .replace("  - train: {epochs: 1, batch_size: 64, lr: 0.1, augment: false}\n", ""))
    # each rank in its own folder, "--out run" relative: as if the ranks did not share a file system
    apart = (tmp_path / "rank0", tmp_path / "rank1")
    for folder in apart:
        folder.mkdir()
    cases = {
        "invalid recipe": ([str(invalid)], None, "stages[2].quantize.bits: must be one of"),  # before the group
        "rank 0 fails alone": ([str(bad_model), "--out", str(tmp_path / "out")], None, "bad.safetensors"),
        "no shared run folder": ([str(recipe), "--out", "run"], apart,
                                 "rank 1: run/00-model/stage.json (written by rank 0) is missing here"),
    }

    def spawn(case):
        args, cwds, _ = case
        return spawn_ranks([*deepshrink, *args], cwds or (None, None))

    with ThreadPoolExecutor(len(cases)) as pool:  # the cases' rank pairs run side by side
        outcomes = dict(zip(cases, pool.map(spawn, cases.values())))
    for case, (_, _, message) in cases.items():
        procs = outcomes[case]
        assert [p.returncode for p in procs] == [2, 2], (case, [p.stderr[-2000:] for p in procs])
        lines = [p.stderr.strip().splitlines()[-1] for p in procs]
        assert lines[0] == lines[1] and lines[0].startswith("deepshrink: error: ") and message in lines[0], case
    assert not (tmp_path / "out/00-model/stage.json").exists()
    assert (apart[0] / "run/00-model/stage.json").is_file() and not (apart[1] / "run").exists()
