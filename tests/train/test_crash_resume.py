"""A real training process killed with SIGKILL resumes to the same result as an uninterrupted run."""

import signal
import subprocess
import sys
import time

import torch

from deepshrink.models import load_model
from deepshrink.train import load_checkpoint

TRAIN = [sys.executable, "-m", "deepshrink", "train", "--model", "digits-cnn", "--data", "digits",
         "--epochs", "6", "--batch-size", "64", "--lr", "0.05", "--threads", "1", "--limit-test", "100"]


def _wait_for_epoch(path, epoch, proc, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "training finished before it could be killed"
        if path.is_file():
            try:
                if load_checkpoint(path)["epoch"] >= epoch:
                    return
            except Exception:
                pass  # being replaced right now; atomic rename means the next read is whole
        time.sleep(0.02)
    raise AssertionError("no checkpoint appeared")


def test_sigkill_then_resume_equals_uninterrupted(tmp_path):
    straight = tmp_path / "straight"
    subprocess.run([*TRAIN, "--out", str(straight)], check=True, capture_output=True, timeout=300)

    cut = tmp_path / "cut"
    proc = subprocess.Popen([*TRAIN, "--out", str(cut)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_epoch(cut / "last.ckpt", 2, proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not (cut / "model.safetensors").exists()
    # A torn temporary file from a write in progress must not disturb the resume.
    (cut / ".last.ckpt.crashed.tmp").write_bytes(b"DSCKPT1\n" + b"\x00" * 10)
    done = subprocess.run([*TRAIN, "--out", str(cut), "--resume"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr

    a, _ = load_model(straight / "model.safetensors")
    b, _ = load_model(cut / "model.safetensors")
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), name
    epochs = [line for line in (cut / "metrics.jsonl").read_text().splitlines() if line.strip()]
    assert len(epochs) == 6
