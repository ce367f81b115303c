"""DDP under torchrun with 2 gloo processes on the CPU equals the single-process run."""

import subprocess
import sys

import torch

from deepshrink.models import load_model

TRAIN = ["train", "--model", "lenet5", "--data", "digits", "--epochs", "2", "--batch-size", "64",
         "--lr", "0.05", "--no-augment", "--limit-train", "1280", "--limit-test", "200", "--threads", "1"]


def _checked(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def _run(argv, timeout=240):
    return _checked(subprocess.run(argv, capture_output=True, text=True, timeout=timeout))


def test_ddp_two_processes_match_single_process(tmp_path, torchrun):
    _run([sys.executable, "-m", "deepshrink", *TRAIN, "--out", str(tmp_path / "single")])
    proc = _checked(torchrun("-m", "deepshrink", *TRAIN, "--out", tmp_path / "ddp"))
    assert proc.stdout.count("final test top-1") == 1  # only rank 0 prints
    single, _ = load_model(tmp_path / "single" / "model.safetensors")
    ddp, _ = load_model(tmp_path / "ddp" / "model.safetensors")
    for (name, a), (_, b) in zip(single.state_dict().items(), ddp.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == sorted(
        p.name for p in (tmp_path / "single").iterdir())


def test_batch_must_split_over_ranks(tmp_path, torchrun):
    proc = torchrun("-m", "deepshrink", *TRAIN[:-2], "--batch-size", "63", "--out", tmp_path / "odd")
    assert proc.returncode != 0
    assert "does not split evenly over 2 processes" in proc.stderr


PRUNE = ["--sparsity", "0.6", "--schedule", "linear", "--epochs", "2", "--prune-epochs", "2", "--data", "digits",
         "--batch-size", "64", "--lr", "0.05", "--no-augment", "--limit-train", "1280", "--limit-test", "200",
         "--threads", "1"]


def test_ddp_pruning_fine_tune_has_the_same_masks_and_weights(tmp_path, torchrun):
    dense = tmp_path / "dense"
    _run([sys.executable, "-m", "deepshrink", *TRAIN, "--epochs", "1", "--out", str(dense)])
    model_file = str(dense / "model.safetensors")
    _run([sys.executable, "-m", "deepshrink", "prune", model_file, *PRUNE, "--out", str(tmp_path / "single.safetensors")])
    proc = _checked(torchrun("-m", "deepshrink", "prune", model_file, *PRUNE, "--out", tmp_path / "ddp.safetensors"))
    assert proc.stdout.count("model written to") == 1
    from deepshrink.prune import masks_of

    single, _ = load_model(tmp_path / "single.safetensors")
    ddp, _ = load_model(tmp_path / "ddp.safetensors")
    single_masks, ddp_masks = masks_of(single), masks_of(ddp)
    assert single_masks.keys() == ddp_masks.keys() and single_masks
    for name in single_masks:
        assert torch.equal(single_masks[name], ddp_masks[name]), name
    for (name, a), (_, b) in zip(single.state_dict().items(), ddp.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)
