"""Learning-rate schedules as pure functions of the optimiser step.

Each returns a factor ``f(step)`` multiplying the base learning rate; it is driven by
``torch.optim.lr_scheduler.LambdaLR`` stepped once per batch, so resuming at step s only
needs s (no scheduler object is pickled).
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

from deepshrink.errors import UserError

LrFactor = Callable[[int], float]
SCHEDULES = ("cosine", "step", "onecycle", "constant")


def cosine(total_steps: int, warmup_steps: int = 0, final_factor: float = 0.0) -> LrFactor:
    """Linear warm-up from 0 over ``warmup_steps``, then half a cosine down to ``final_factor``."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        span = max(1, total_steps - warmup_steps)
        progress = min(1.0, (step - warmup_steps) / span)
        return final_factor + (1 - final_factor) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def multistep(milestones: Sequence[int], gamma: float = 0.1, warmup_steps: int = 0) -> LrFactor:
    """Multiply by ``gamma`` at each milestone step (optionally after a linear warm-up)."""
    marks = sorted(milestones)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return gamma ** sum(step >= m for m in marks)

    return factor


def onecycle(total_steps: int, pct_start: float = 0.3, div_factor: float = 25.0,
             final_div_factor: float = 1e4) -> LrFactor:
    """Smith's one-cycle: cosine up from 1/div_factor to 1 over ``pct_start`` of the run,
    then cosine down to 1/(div_factor*final_div_factor) (the shape of torch's OneCycleLR)."""
    peak = max(1.0, pct_start * total_steps - 1)   # torch's phase boundaries
    last = max(peak + 1, total_steps - 1)
    start, end = 1 / div_factor, 1 / (div_factor * final_div_factor)

    def factor(step: int) -> float:
        if step <= peak:
            return _cos_interp(start, 1.0, step / peak)
        return _cos_interp(1.0, end, min(1.0, (step - peak) / (last - peak)))

    return factor


def constant() -> LrFactor:
    return lambda step: 1.0


def make_schedule(name: str, *, epochs: int, steps_per_epoch: int, warmup_epochs: float = 0.0,
                  milestones: Sequence[float] = (), gamma: float = 0.1) -> LrFactor:
    """The schedule ``name`` over ``epochs`` epochs; milestones and warm-up are in epochs."""
    total = epochs * steps_per_epoch
    warmup = int(round(warmup_epochs * steps_per_epoch))
    if name == "cosine":
        return cosine(total, warmup)
    if name == "step":
        marks = milestones or (epochs // 2, epochs * 3 // 4)
        return multistep([int(round(m * steps_per_epoch)) for m in marks], gamma, warmup)
    if name == "onecycle":
        return onecycle(total)
    if name == "constant":
        return constant()
    raise UserError(f"unknown schedule {name!r}; choose one of: {', '.join(SCHEDULES)}")


def _cos_interp(a: float, b: float, t: float) -> float:
    return b + (a - b) * 0.5 * (1 + math.cos(math.pi * t))
