"""The training loop: one engine for training, fine-tuning after pruning, QAT and distillation.

Under torchrun (see :mod:`deepshrink.train.distributed`) the model is wrapped in
DistributedDataParallel, ``batch_size`` is the global batch split evenly over the ranks, each
rank reads its own shard, and only rank 0 writes files.

Determinism: batch order and augmentation of epoch e come from (seed, e), and the global
RNG (dropout) is reseeded from (seed, e) at each epoch start, so resuming from the checkpoint
of epoch e gives the same final weights as an uninterrupted run (CPU, same thread count).

Mixed precision (``config.precision`` fp16/bf16): the forward pass and the loss run under
``torch.autocast``; weights, gradients and the optimiser stay float32. fp16 scales the loss
with a :class:`~deepshrink.train.loss_scale.DynamicLossScaler` (saved in the checkpoint);
a step skipped because the scaled gradients overflowed is not a bad step while the scale is
above ``MIN_LOSS_SCALE``, and it does not count as a step: neither ``step`` nor the learning-rate
schedule moves on (the update was not taken; only the scale changed).
"""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from deepshrink.data import BatchLoader, ImageDataset
from deepshrink.errors import ConfigError, UserError
from deepshrink.files import make_folder
from deepshrink.models.file import ModelInfo, save_model
from deepshrink.train.checkpoint import load_checkpoint, save_checkpoint
from deepshrink.train.config import TrainConfig, with_added_settings
from deepshrink.train.distributed import all_ranks_true, current
from deepshrink.train.evaluate import EvalResult, evaluate
from deepshrink.train.hooks import TrainHook
from deepshrink.train.loss_scale import DynamicLossScaler
from deepshrink.train.metrics import MetricsLog
from deepshrink.train.optim import build_optimizer
from deepshrink.train.schedule import LrFactor, make_schedule

CHECKPOINT = "last.ckpt"
BEST_MODEL = "best.safetensors"
FINAL_MODEL = "model.safetensors"
METRICS = "metrics.jsonl"

AUTOCAST_DTYPES = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}
# An overflow at a loss scale this low or lower means the gradients themselves are not finite.
MIN_LOSS_SCALE = 1.0


class TrainingDiverged(UserError):
    """Too many consecutive steps with a NaN or infinite loss (or, in fp16, with inf/NaN
    gradients at a loss scale of MIN_LOSS_SCALE or lower)."""


@dataclass
class TrainResult:
    """Outcome of :meth:`Trainer.fit`; ``history`` holds one metrics dict per epoch."""

    final: EvalResult | None
    best_top1: float
    best_epoch: int
    history: list[dict[str, Any]] = field(default_factory=list)


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present, else the CPU; any other device must be present here
    (:class:`UserError` naming it otherwise)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r}") from None
    if device.type == "cpu":
        return device
    backend = getattr(torch, device.type, None)
    if not getattr(backend, "is_available", lambda: False)():
        raise UserError(f"device {name!r}: no {device.type} device is available here; use cpu or auto")
    count = getattr(backend, "device_count", lambda: 1)()
    if device.index is not None and device.index >= count:
        raise UserError(f"device {name!r}: there are {count} {device.type} devices here (0..{count - 1})")
    return device


class Trainer:
    """Trains ``model`` on ``train_set``, evaluating on ``test_set`` each epoch.

    With ``out_dir``, writes ``last.ckpt`` (atomic, every epoch), ``best.safetensors``,
    ``model.safetensors`` (at the end) and ``metrics.jsonl``; ``info`` describes the model
    for those files. ``lr_factor`` overrides the configured schedule (any step -> factor).
    """

    def __init__(self, model: nn.Module, train_set: ImageDataset, test_set: ImageDataset | None,
                 config: TrainConfig, *, out_dir: str | Path | None = None,
                 info: ModelInfo | None = None, hooks: Sequence[TrainHook] = (),
                 lr_factor: LrFactor | None = None):
        if out_dir is not None and info is None:
            raise ValueError("writing model files needs the model's ModelInfo")
        self.config = config
        self.dist = current()
        self.device = resolve_device(config.device)
        self.memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        self.autocast_dtype = _autocast_dtype(config.precision, self.device)
        self.loss_scaler = DynamicLossScaler() if config.precision == "fp16" else None
        self.model = model.to(self.device, memory_format=self.memory_format)
        self.train_model = self._wrap_ddp(self.model)  # what the training step calls
        self.info = info
        self.hooks = list(hooks)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        if self.out_dir is not None and self.dist.is_main:
            make_folder(self.out_dir)  # a file in the way, a read-only parent: said now, not after an epoch
        mean, std = (info.input.mean, info.input.std) if info else (train_set.mean, train_set.std)
        ranks = dict(rank=self.dist.rank, world_size=self.dist.world_size, device=self.device)
        self.train_loader = BatchLoader(
            train_set, self._rank_batch(config.batch_size), shuffle=True, mean=mean, std=std,
            seed=config.seed, augment=train_set.augment if config.augment else None, **ranks)
        self.test_loader = None if test_set is None else BatchLoader(
            test_set, config.eval_batch_size, mean=mean, std=std, even_shards=False, **ranks)
        self.optimizer = build_optimizer(
            self.model, config.optimizer, lr=config.lr, momentum=config.momentum,
            weight_decay=config.weight_decay, nesterov=config.nesterov)
        self.lr_factor = lr_factor or make_schedule(
            config.schedule, epochs=config.epochs, steps_per_epoch=len(self.train_loader),
            warmup_epochs=config.warmup_epochs, milestones=config.milestones, gamma=config.gamma)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self.lr_factor)
        self.metrics = MetricsLog(self.out_dir / METRICS if self.out_dir and self.dist.is_main else None)
        self.epoch = 0      # epochs completed
        self.step = 0       # optimiser steps taken, and skipped bad steps (not fp16 overflow skips)
        self.bad_steps = 0  # consecutive non-finite losses (or gradients, at the lowest loss scale)
        self.overflow_steps = 0  # steps of the current epoch skipped for fp16 gradient overflow
        self._before: list[torch.Tensor] | None = None  # the parameters before the current step
        self._parameter_names = {name for name, _ in self.model.named_parameters()}
        self.best_top1, self.best_epoch = -1.0, 0
        self.history: list[dict[str, Any]] = []  # one metrics record per finished epoch

    # ----------------------------------------------------------------- public
    def fit(self, resume: bool = False) -> TrainResult:
        """Run the remaining epochs; with ``resume``, continue from ``out_dir/last.ckpt``."""
        if resume:
            self._resume()
        for hook in self.hooks:
            hook.on_fit_start(self)
        final = None
        while self.epoch < self.config.epochs:
            record = self._train_epoch(self.epoch)
            last = self.epoch + 1 == self.config.epochs
            if self.test_loader is not None and (last or (self.epoch + 1) % self.config.eval_every == 0):
                final = self._evaluate()
                record.update(test_top1=final.top1, test_loss=final.loss)
                self._track_best(final.top1)
            for hook in self.hooks:
                hook.on_epoch_end(self, self.epoch, record)
            self.epoch += 1
            self.history.append(record)
            self.metrics.write(record)
            self._save_checkpoint()
            self._log_epoch(record)
        if final is None and self.test_loader is not None:
            final = self._evaluate()
        for hook in self.hooks:
            hook.on_fit_end(self)
        self._save_final(final)
        return TrainResult(final, self.best_top1, self.best_epoch, list(self.history))

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    # ---------------------------------------------------------------- one epoch
    def _train_epoch(self, epoch: int) -> dict[str, Any]:
        cfg = self.config
        torch.manual_seed(cfg.seed * 1_000_003 + epoch + 7919 * self.dist.rank)
        self.train_loader.set_epoch(epoch)
        for hook in self.hooks:
            hook.on_epoch_start(self, epoch)
        self.model.train()
        loss_sum, correct, seen, skipped = 0.0, 0, 0, 0
        self.overflow_steps = 0
        data_time, start = 0.0, time.perf_counter()
        batches = self._timed(iter(self.train_loader))
        bar = tqdm(batches, total=len(self.train_loader), desc=f"epoch {epoch + 1}/{cfg.epochs}",
                   leave=False, disable=not self._show_progress(), file=sys.stderr)
        for (inputs, targets), waited in bar:
            data_time += waited
            outputs, loss = self._step(inputs, targets)
            if outputs is None:
                skipped += 1
                continue
            loss_sum += loss * targets.numel()
            correct += int((outputs.argmax(1) == targets).sum())
            seen += targets.numel()
            bar.set_postfix(loss=f"{loss:.3f}", lr=f"{self.lr:.4f}", refresh=False)
        elapsed = time.perf_counter() - start
        record = {"epoch": epoch + 1, "step": self.step, "lr": self.lr,
                  "train_loss": loss_sum / max(seen, 1), "train_top1": correct / max(seen, 1),
                  "skipped_steps": skipped, "seconds": elapsed, "data_seconds": data_time}
        if self.loss_scaler is not None:
            record.update(loss_scale=self.loss_scaler.scale, overflow_steps=self.overflow_steps)
        return record

    def _step(self, inputs: torch.Tensor, targets: torch.Tensor):
        inputs = inputs.contiguous(memory_format=self.memory_format)  # hooks (a teacher) see the same layout
        with self._autocast():
            outputs = self.train_model(inputs)
            loss = F.cross_entropy(outputs, targets, label_smoothing=self.config.label_smoothing)
            for hook in self.hooks:
                loss = hook.loss(self, inputs, targets, outputs, loss)
        self.optimizer.zero_grad(set_to_none=True)
        if not all_ranks_true(bool(torch.isfinite(loss)), self.device):
            self._bad_step(f"loss was {loss.item()}")
            return None, None
        if self.loss_scaler is not None:
            return self._scaled_step(outputs, loss)
        loss.backward()
        for hook in self.hooks:
            hook.after_backward(self)
        self._snapshot()
        self.optimizer.step()
        if self._undo_non_finite():
            self._bad_step("the step left weights inf/NaN")
            return None, None
        self.bad_steps = 0
        for hook in self.hooks:
            hook.after_step(self)
        self._advance()
        return outputs.detach(), loss.item()

    def _scaled_step(self, outputs: torch.Tensor, loss: torch.Tensor):
        """The fp16 update of a finite loss: backward of loss * S, the hooks see the unscaled
        float32 gradients, the optimiser steps unless they hold inf/NaN (on any rank)."""
        scaler = self.loss_scaler
        scale = scaler.scale
        scaler.scale_loss(loss).backward()
        scaler.unscale_(self.optimizer)
        for hook in self.hooks:
            hook.after_backward(self)
        self._snapshot()
        stepped = scaler.step(self.optimizer)
        scaler.update()
        if stepped and self._undo_non_finite():
            self._bad_step("the step left weights inf/NaN")
            return None, None
        if stepped:
            for hook in self.hooks:
                hook.after_step(self)
        else:
            self.overflow_steps += 1
        if stepped:
            self.bad_steps = 0
            self._advance()
        elif scale > MIN_LOSS_SCALE:  # an overflow here only means S was too large: no step taken,
            self.bad_steps = 0        # so the schedule (a function of the step) stays where it is
        else:
            self._bad_step(f"gradients were inf/NaN at loss scale {scale:g}")
        return outputs.detach(), loss.item()

    def _snapshot(self) -> None:
        """Copy the optimised parameters aside (into buffers kept from step to step), so that
        :meth:`_undo_non_finite` can put them back."""
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        if self._before is None or len(self._before) != len(params) \
                or any(b.shape != p.shape for b, p in zip(self._before, params)):
            self._before = [torch.empty_like(p) for p in params]
        with torch.no_grad():
            torch._foreach_copy_(self._before, params)

    def _undo_non_finite(self) -> bool:
        """True, with the parameters of :meth:`_snapshot` restored, when the optimiser step just
        taken left any of them inf or NaN (on any rank); a finite step is kept."""
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        finite = bool(torch.stack([torch.isfinite(p).all() for p in params]).all()) if params else True
        if all_ranks_true(finite, self.device):
            return False
        with torch.no_grad():
            torch._foreach_copy_(params, self._before)
        return True

    def _advance(self) -> None:
        """One optimiser step has passed (taken, or skipped as a bad step): move the schedule on."""
        self.step += 1
        self._set_lr()

    def _set_lr(self) -> None:
        """The learning rate of step ``self.step``: the base rate times ``lr_factor(step)``, what
        ``LambdaLR.step()`` sets (same floats). Set directly rather than through
        ``self.scheduler.step()``: the schedule is a pure function of the step counter, so the
        order against ``optimizer.step()`` does not matter, and a bad step (skipped, yet counted
        so that runs with and without one stay on the same schedule) would otherwise trigger
        PyTorch's "lr_scheduler.step() before optimizer.step()" warning when it comes first."""
        self.scheduler.last_epoch = self.step
        for group in self.optimizer.param_groups:
            group["lr"] = group["initial_lr"] * self.lr_factor(self.step)
        self.scheduler._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def _bad_step(self, what: str) -> None:
        """A step skipped because ``what`` (a loss or gradients) was not finite."""
        self.bad_steps += 1
        self._advance()
        if self.bad_steps >= self.config.max_bad_steps:
            raise TrainingDiverged(
                f"training diverged: {what} for {self.bad_steps} consecutive steps "
                f"at epoch {self.epoch + 1}; try a lower learning rate "
                f"(the last good checkpoint is kept)")

    def _autocast(self) -> contextlib.AbstractContextManager:
        """``torch.autocast`` to the configured half dtype; nothing at all for fp32."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    @staticmethod
    def _timed(batches: Iterator) -> Iterator:
        """Yield (batch, seconds spent producing it)."""
        while True:
            start = time.perf_counter()
            try:
                batch = next(batches)
            except StopIteration:
                return
            yield batch, time.perf_counter() - start

    def _evaluate(self) -> EvalResult:
        return evaluate(self.model, self.test_loader, self.device, across_ranks=self.dist.active)

    def _rank_batch(self, batch_size: int) -> int:
        if batch_size % self.dist.world_size:
            raise UserError(f"batch size {batch_size} does not split evenly over {self.dist.world_size} processes")
        return batch_size // self.dist.world_size

    def _wrap_ddp(self, model: nn.Module) -> nn.Module:
        if not self.dist.active:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index if self.device.index is not None else torch.cuda.current_device()] \
            if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    # ------------------------------------------------------------ persistence
    def _track_best(self, top1: float) -> None:
        if top1 > self.best_top1:
            self.best_top1, self.best_epoch = top1, self.epoch + 1
            if self.out_dir is not None and self.dist.is_main:
                self._refuse_non_finite(self.out_dir / BEST_MODEL)
                save_model(self.out_dir / BEST_MODEL, self.model, self._info_with(top1, best=True))

    def _save_checkpoint(self) -> None:
        if self.out_dir is None or not self.dist.is_main:
            return
        state = {
            "epoch": self.epoch, "step": self.step, "bad_steps": self.bad_steps,
            "best_top1": self.best_top1, "best_epoch": self.best_epoch,
            "config": self.config.to_dict(),
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "hooks": [hook.state_dict() for hook in self.hooks],
        }
        if self.loss_scaler is not None:
            state["loss_scaler"] = self.loss_scaler.state_dict()
        self._refuse_non_finite(self.out_dir / CHECKPOINT)
        save_checkpoint(self.out_dir / CHECKPOINT, state)

    def _resume(self) -> None:
        path = self.out_dir / CHECKPOINT if self.out_dir else None
        if path is None or not path.is_file():
            raise UserError(f"nothing to resume: no {CHECKPOINT} in {self.out_dir}")
        state = load_checkpoint(path)
        saved_config = with_added_settings(state.get("config", {}))
        conflicts = self.config.resume_conflicts(saved_config)
        if conflicts:
            name = conflicts[0]
            raise UserError(f"cannot resume {path}: {name} was {saved_config[name]!r}, "
                            f"now {getattr(self.config, name)!r}")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.loss_scaler is not None and "loss_scaler" in state:
            self.loss_scaler.load_state_dict(state["loss_scaler"])
        for hook, hook_state in zip(self.hooks, state.get("hooks", [])):
            hook.load_state_dict(hook_state)
        self.epoch, self.step = state["epoch"], state["step"]
        self.bad_steps = state.get("bad_steps", 0)
        self.best_top1, self.best_epoch = state["best_top1"], state["best_epoch"]
        self._set_lr()
        if self.dist.is_main:
            self.metrics.keep(lambda record: record.get("epoch", 0) <= self.epoch)
        saved = MetricsLog(self.out_dir / METRICS).read()
        self.history = [r for r in saved if r.get("epoch", 0) <= self.epoch]

    def _save_final(self, final: EvalResult | None) -> None:
        if self.info is not None:
            self.info = self._info_with(final.top1 if final else None)
        if self.out_dir is not None and self.dist.is_main:
            self._refuse_non_finite(self.out_dir / FINAL_MODEL)
            save_model(self.out_dir / FINAL_MODEL, self.model, self.info)

    def _refuse_non_finite(self, path: Path) -> None:
        """Raise :class:`TrainingDiverged` instead of writing ``path`` from a model with an inf/NaN
        parameter or BatchNorm statistic (the files already written stay as they are)."""
        for name, tensor in self.model.state_dict().items():
            checked = name.endswith(("running_mean", "running_var")) or name in self._parameter_names
            if checked and tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise TrainingDiverged(f"training diverged: {name} holds inf/NaN values; {path} is not written "
                                       f"(files written before are kept)")

    def _info_with(self, top1: float | None, best: bool = False) -> ModelInfo:
        stage = {"stage": "train", "epochs": self.epoch + (1 if best else 0),
                 "optimizer": self.config.optimizer, "lr": self.config.lr,
                 "schedule": self.config.schedule, "seed": self.config.seed}
        if top1 is not None:
            stage["test_top1"] = top1
        info = self.info
        return ModelInfo(info.arch, info.input, info.classes, info.dataset, [*info.history, stage])

    def _log_epoch(self, record: dict[str, Any]) -> None:
        """One line per epoch on stderr where progress bars are off because stderr is not a
        terminal (a background run's log), on the main rank only."""
        if self.config.progress is not None or not self.dist.is_main or sys.stderr.isatty():
            return
        test = f", test top-1 {100 * record['test_top1']:.2f}%" if "test_top1" in record else ""
        print(f"epoch {record['epoch']}/{self.config.epochs}: train loss {record['train_loss']:.4f}, "
              f"train top-1 {100 * record['train_top1']:.2f}%{test}, lr {record['lr']:.5f}, "
              f"{record['seconds']:.0f} s", file=sys.stderr, flush=True)

    def _show_progress(self) -> bool:
        if not self.dist.is_main:
            return False
        if self.config.progress is not None:
            return self.config.progress
        return sys.stderr.isatty()


def _autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``precision`` (None for fp32); a :class:`UserError` when ``device``
    cannot run it."""
    dtype = AUTOCAST_DTYPES[precision]
    if dtype is None:
        return None
    if not torch.amp.is_autocast_available(device.type):
        raise ConfigError("TrainConfig", "precision", f"{precision!r} needs autocast, which {device.type} does not have")
    if dtype == torch.bfloat16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError("TrainConfig", "precision", "'bf16': this GPU has no bfloat16 support; use fp16")
    return dtype


def lambda_schedule(fn: Callable[[float], float], steps_per_epoch: int) -> LrFactor:
    """Wrap a user function of the (fractional) epoch into a per-step factor (LambdaLR style)."""
    return lambda step: fn(step / steps_per_epoch)
