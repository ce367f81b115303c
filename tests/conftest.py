"""Shared fixtures: the optional real data beside the repository, launching 2 gloo ranks, and a
hook that interrupts training."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from deepshrink.train import TrainHook

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data`` (real CIFAR-10 and pretrained checkpoints); skips when absent."""
    if not (SHARED_DATA / "cifar10_test.npz").is_file():
        pytest.skip(f"real data not available at {SHARED_DATA}")
    return SHARED_DATA


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _torchrun(*args, timeout: float = 300) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
            "--master-port", str(_free_port()), *map(str, args)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def _spawn_ranks(argv: list[str], cwds=(None, None), timeout: float = 240) -> list[subprocess.CompletedProcess]:
    port = str(_free_port())
    world = str(len(cwds))
    procs = []
    for rank, cwd in enumerate(cwds):
        env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "WORLD_SIZE": world,
               "RANK": str(rank), "LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": world}
        procs.append(subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
    done = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=timeout)
            done.append(subprocess.CompletedProcess(argv, proc.returncode, out, err))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return done


@pytest.fixture(scope="session")
def torchrun():
    """``torchrun(*args, timeout=300)``: ``python -m torch.distributed.run`` with 2 processes on a
    free local port; returns the finished process (text output captured, exit code unchecked)."""
    return _torchrun


@pytest.fixture(scope="session")
def spawn_ranks():
    """``spawn_ranks(argv, cwds=(None, None), timeout=240)``: ``argv`` as ``len(cwds)`` ranks of one
    gloo group, started with torchrun's environment (RANK, WORLD_SIZE, MASTER_*) so that each
    rank's exit code can be checked; rank r runs in ``cwds[r]``; every rank must end by ``timeout``."""
    return _spawn_ranks


class CrashIn(TrainHook):
    """Simulates a kill in the middle of an epoch: raises KeyboardInterrupt after ``after_steps``
    steps of epoch ``epoch``."""

    def __init__(self, epoch: int, after_steps: int = 3):
        self.epoch, self.after_steps, self.seen = epoch, after_steps, 0

    def after_step(self, trainer) -> None:
        if trainer.epoch == self.epoch:
            self.seen += 1
            if self.seen == self.after_steps:
                raise KeyboardInterrupt


@pytest.fixture(scope="session")
def crash_in():
    """The CrashIn hook class: ``crash_in(epoch=2)`` interrupts epoch 2 after 3 steps."""
    return CrashIn
