"""Range observers: the real interval [lo, hi] that an activation quantizer maps onto its levels.

Each observer is an ``nn.Module`` whose state lives in buffers (``lo``, ``hi``: float32 scalars;
``batches``: int64 scalar, the number of batches observed), so it is saved in the state dict
and broadcast by DDP. ``observe(x)`` folds one batch (any shape) into the range; ``range()``
returns ``(lo, hi)`` as 0-dim float32 tensors on the buffers' device. ``spec()`` gives the
JSON-valued constructor arguments; :data:`OBSERVERS` maps a name to each class.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from deepshrink.errors import UserError


class RangeObserver(nn.Module):
    """Base class: the buffers, the not-yet-observed check and the spec protocol."""

    name = ""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("lo", torch.tensor(math.inf))
        self.register_buffer("hi", torch.tensor(-math.inf))
        self.register_buffer("batches", torch.tensor(0, dtype=torch.long))

    @property
    def has_observed(self) -> bool:
        """Whether ``range()`` is defined (a fixed range always is)."""
        return int(self.batches) > 0

    @torch.no_grad()
    def observe(self, x: Tensor) -> None:
        """Fold the batch ``x`` into the range."""
        if x.numel() == 0:
            return
        self._fold(x.detach().float())
        self.batches += 1

    def _fold(self, x: Tensor) -> None:
        raise NotImplementedError

    def range(self) -> tuple[Tensor, Tensor]:
        """``(lo, hi)``, 0-dim float32 tensors; (inf, -inf) before the first observation (check
        :attr:`has_observed`; not checked here, which would synchronise with the GPU)."""
        return self.lo.clone(), self.hi.clone()

    def reset(self) -> None:
        """Forget everything observed."""
        self.lo.fill_(math.inf)
        self.hi.fill_(-math.inf)
        self.batches.zero_()

    def spec(self) -> dict[str, Any]:
        return {}

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.spec().items())


class MinMaxObserver(RangeObserver):
    """The running minimum and maximum over all observed batches."""

    name = "minmax"

    def _fold(self, x: Tensor) -> None:
        self.lo.copy_(torch.minimum(self.lo, x.amin()))
        self.hi.copy_(torch.maximum(self.hi, x.amax()))


class MovingAverageObserver(RangeObserver):
    """Exponential moving average of the per-batch min and max: ``lo <- lo + momentum * (min x -
    lo)`` (likewise hi); the first batch initialises them."""

    name = "ema"

    def __init__(self, momentum: float = 0.01) -> None:
        super().__init__()
        if not 0.0 < momentum <= 1.0:
            raise UserError(f"moving-average momentum must be in (0, 1], got {momentum}")
        self.momentum = float(momentum)

    def _fold(self, x: Tensor) -> None:
        lo, hi = x.amin(), x.amax()
        first = self.batches == 0
        self.lo.copy_(torch.where(first, lo, self.lo + self.momentum * (lo - self.lo)))
        self.hi.copy_(torch.where(first, hi, self.hi + self.momentum * (hi - self.hi)))

    def spec(self) -> dict[str, Any]:
        return {"momentum": self.momentum}


class PercentileObserver(RangeObserver):
    """Per batch, the ``100 - percentile`` and ``percentile`` percentiles of (a sample of at most
    ``max_samples`` elements of) the batch; the range is their mean over the batches.

    The sample is drawn without the global RNG, from a generator seeded by ``seed`` and the batch
    count, so calibration is reproducible.
    """

    name = "percentile"

    def __init__(self, percentile: float = 99.99, max_samples: int = 1 << 18, seed: int = 0) -> None:
        super().__init__()
        if not 50.0 < percentile <= 100.0:
            raise UserError(f"percentile must be in (50, 100], got {percentile}")
        if max_samples < 1:
            raise UserError(f"percentile observer: max_samples must be >= 1, got {max_samples}")
        self.percentile, self.max_samples, self.seed = float(percentile), int(max_samples), int(seed)

    def _fold(self, x: Tensor) -> None:
        flat = x.reshape(-1)
        if flat.numel() > self.max_samples:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + int(self.batches))
            picked = torch.randint(flat.numel(), (self.max_samples,), generator=generator)
            flat = flat[picked.to(flat.device)]
        upper = self.percentile / 100.0
        q = torch.tensor([1.0 - upper, upper], dtype=flat.dtype, device=flat.device)
        lo, hi = torch.quantile(flat, q)
        first, n = self.batches == 0, self.batches.to(lo.dtype)  # running mean over the batches
        self.lo.copy_(torch.where(first, lo, self.lo + (lo - self.lo) / (n + 1)))
        self.hi.copy_(torch.where(first, hi, self.hi + (hi - self.hi) / (n + 1)))

    def spec(self) -> dict[str, Any]:
        return {"percentile": self.percentile, "max_samples": self.max_samples, "seed": self.seed}


class FixedRangeObserver(RangeObserver):
    """A range known in advance (a bounded activation: ReLU6 gives [0, 6]); observing changes
    nothing."""

    name = "fixed"

    def __init__(self, lo: float, hi: float) -> None:
        super().__init__()
        if not lo <= hi:
            raise UserError(f"fixed range needs lo <= hi, got [{lo}, {hi}]")
        self.lo.fill_(float(lo))
        self.hi.fill_(float(hi))

    @property
    def has_observed(self) -> bool:
        return True

    def observe(self, x: Tensor) -> None:
        pass

    def reset(self) -> None:
        pass

    def spec(self) -> dict[str, Any]:
        return {"lo": float(self.lo), "hi": float(self.hi)}


OBSERVERS: dict[str, type[RangeObserver]] = {
    cls.name: cls for cls in (MinMaxObserver, MovingAverageObserver, PercentileObserver, FixedRangeObserver)
}


def make_observer(name: str, **args: Any) -> RangeObserver:
    """The observer registered as ``name``, built with ``args``; a UserError for unknown names."""
    if name not in OBSERVERS:
        raise UserError(f"unknown range observer {name!r}; choose one of: {', '.join(OBSERVERS)}")
    try:
        return OBSERVERS[name](**args)
    except TypeError as exc:
        raise UserError(f"range observer {name!r}: bad arguments {args!r} ({exc})") from None
