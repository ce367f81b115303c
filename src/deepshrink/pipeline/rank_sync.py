"""Keeping the ranks of a torchrun job in step outside the training loop (the recipe runner).

Two collectives, both on a gloo group (the default group under gloo, a separate CPU group
beside NCCL), so they carry plain bytes without touching the GPU:

- :meth:`RankSync.on_main`: rank 0 does some work (writes files, decides what to skip) and
  every rank receives its JSON result. It is also the barrier after rank 0's writes: no rank
  returns before rank 0 has finished. If the work fails on rank 0, every rank fails with it.
- :meth:`RankSync.agree`: every rank runs the same check; if it raises a :class:`UserError`
  on any rank, it raises on all (the lowest failing rank's message).

A single process (no process group) runs the work or the check directly. What a failure on
one rank does to the others: a :class:`UserError` inside these calls is raised on every rank
(so ``deepshrink`` exits 2 everywhere); any other exception on rank 0 inside ``on_main``
makes the other ranks raise :class:`RankFailed`. Inside a training job the ranks act alike,
so a user mistake found there (e.g. a batch that does not split over the ranks) is raised by
every rank itself. A rank that dies inside a job's own collectives ends the job: torchrun
stops the other ranks when one exits with an error; without torchrun they fail when the
connection to the dead rank closes, at the latest at the process group's timeout (torch's
default: 30 minutes for gloo, 10 for NCCL).
"""

from __future__ import annotations

import json
from typing import Any, Callable

import torch
import torch.distributed as dist

from deepshrink.errors import UserError
from deepshrink.train.distributed import current, init_from_env


class RankFailed(RuntimeError):
    """Rank 0 failed (not a user mistake) while the other ranks waited for its result."""


class RankSync:
    """The ranks of this process's group (one rank when torchrun did not start it)."""

    def __init__(self, group: Any = None):
        self.context, self.group = current(), group
        self.rank, self.world_size = self.context.rank, self.context.world_size

    @classmethod
    def join(cls, device: str = "auto") -> "RankSync":
        """Join torchrun's process group (as the jobs do, see :func:`init_from_env`) and make
        the gloo group the runner talks on. Every rank must call this, in the same order."""
        context = init_from_env(device)
        if not context.active or dist.get_backend() == "gloo":
            return cls()
        return cls(dist.new_group(backend="gloo"))

    @property
    def is_main(self) -> bool:
        return self.context.is_main

    @property
    def active(self) -> bool:
        return self.context.active

    def on_main(self, work: Callable[[], Any]) -> Any:
        """``work()`` run on rank 0 only; its result (JSON data) returned on every rank, as
        JSON gives it back (tuples become lists) also on rank 0 and in a single process."""
        if not self.is_main:
            payload = json.loads(self._broadcast(None, src=0))
            if "result" in payload:
                return payload["result"]
            if "user_error" in payload:
                raise UserError(payload["user_error"])
            raise RankFailed(f"rank 0 failed: {payload['error']}")
        try:
            text = json.dumps({"result": work()})
        except UserError as exc:
            self._send_from_main({"user_error": str(exc)})
            raise
        except Exception as exc:
            self._send_from_main({"error": f"{type(exc).__name__}: {exc}"})
            raise
        if self.active:
            self._broadcast(text, src=0)
        return json.loads(text)["result"]

    def agree(self, check: Callable[[], None]) -> None:
        """Run ``check()`` on every rank; a :class:`UserError` on any rank is raised on all
        (the message of the lowest failing rank, prefixed with its rank when not rank 0)."""
        try:
            check()
            message = None
        except UserError as exc:
            if not self.active:
                raise
            message = str(exc)
        if not self.active:
            return
        first = torch.tensor([self.world_size if message is None else self.rank], dtype=torch.int64)
        dist.all_reduce(first, op=dist.ReduceOp.MIN, group=self.group)
        failed = int(first.item())
        if failed == self.world_size:
            return
        text = self._broadcast(message if self.rank == failed else None, src=failed)
        raise UserError(text if failed == 0 else f"rank {failed}: {text}")

    def _send_from_main(self, payload: dict[str, str]) -> None:
        if self.active:
            self._broadcast(json.dumps(payload), src=0)

    def _broadcast(self, text: str | None, src: int) -> str:
        """``text`` of rank ``src`` (UTF-8 bytes in a uint8 tensor) on every rank."""
        data = text.encode("utf-8") if self.rank == src else b""
        size = torch.tensor([len(data)], dtype=torch.int64)
        dist.broadcast(size, src=src, group=self.group)
        wire = torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else \
            torch.empty(int(size.item()), dtype=torch.uint8)
        if wire.numel():
            dist.broadcast(wire, src=src, group=self.group)
        return wire.numpy().tobytes().decode("utf-8")
