"""A 2-rank torchrun training whose processes are SIGKILLed after epoch 1 resumes under DDP and
ends with the same weights as an uninterrupted 2-rank run.

The cut is deterministic: every rank kills itself (SIGKILL: no cleanup, no atexit) at the start
of epoch 2, when rank 0 has written the checkpoint of epoch 1; torchrun then ends the job. To
start the ranks once less, the same launch first trains the uninterrupted reference run.
"""

import json

import torch

from deepshrink.models import load_model
from deepshrink.train import load_checkpoint

# Digits CNN (BatchNorm buffers, momentum, random-crop augmentation all have to resume).
DRIVER = """
import os, signal, sys
import torch
from deepshrink.pipeline.datasets import load_split
from deepshrink.pipeline.train import train_job
from deepshrink.train import TrainConfig, TrainHook


class SigkillAtEpochStart(TrainHook):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_start(self, trainer, epoch):
        if epoch == self.epoch:
            os.kill(os.getpid(), signal.SIGKILL)


def train(out, resume=False, hooks=()):
    train_job(train_set, test_set, config, model_name="digits-cnn", out_dir=out, resume=resume, hooks=hooks)


torch.set_num_threads(1)
train_set = load_split("digits", "train", limit=768)
test_set = load_split("digits", "test", limit=128)
config = TrainConfig(epochs=3, batch_size=64, lr=0.05, device="cpu", progress=False)
if sys.argv[1] == "straight-then-kill":
    train(sys.argv[2])
    train(sys.argv[3], hooks=[SigkillAtEpochStart(1)])
else:
    train(sys.argv[2], resume=True)
"""
TIMES = ("seconds", "data_seconds")


def _epochs(folder) -> list[dict]:
    records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [{k: v for k, v in record.items() if k not in TIMES} for record in records]


def test_sigkilled_ddp_run_resumes_to_the_uninterrupted_weights(tmp_path, torchrun):
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    straight, cut = tmp_path / "straight", tmp_path / "cut"
    killed = torchrun(driver, "straight-then-kill", straight, cut)
    assert killed.returncode != 0  # torchrun reports the killed workers
    assert (straight / "model.safetensors").is_file()
    assert load_checkpoint(cut / "last.ckpt")["epoch"] == 1
    assert not (cut / "model.safetensors").exists()
    assert len(_epochs(cut)) == 1
    epoch_1 = (cut / "metrics.jsonl").read_text()

    resumed = torchrun(driver, "resume", cut)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, _ = load_model(straight / "model.safetensors")
    b, _ = load_model(cut / "model.safetensors")
    first = a.state_dict()
    assert first.keys() == b.state_dict().keys()
    for name, tensor in b.state_dict().items():
        assert torch.equal(first[name], tensor), name  # BatchNorm running statistics included
    assert _epochs(cut) == _epochs(straight)  # losses, accuracies and steps of all 3 epochs
    assert (cut / "metrics.jsonl").read_text().startswith(epoch_1)  # epoch 1 was not trained again
    assert load_checkpoint(cut / "last.ckpt")["epoch"] == 3
