"""Dynamic loss scaling for float16 mixed-precision training, written out step by step.

Gradients computed in float16 underflow to zero below about 6e-8 (and lose precision below
6e-5). Multiplying the loss by a scale S shifts every gradient up by S; the float32 master
gradients are divided by S again before the optimiser sees them. If S was too large some
gradient overflowed to inf (or became NaN): that step is skipped and S is multiplied by
``backoff_factor``; after ``growth_interval`` consecutive good steps S is multiplied by
``growth_factor`` (Micikevicius et al. 2018, "Mixed Precision Training").

One iteration::

    scaler.scale_loss(loss).backward()
    scaler.unscale_(optimizer)   # optional here: gradients are true gradients from now on
    stepped = scaler.step(optimizer)
    scaler.update()

Under torch.distributed the found-inf decision is shared, so every rank skips the same steps.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from deepshrink.train.distributed import all_ranks_true


class DynamicLossScaler:
    """Loss scale S (a plain float) with the skip/backoff/growth rule described above.

    ``init_scale`` > 0, ``growth_factor`` > 1, 0 < ``backoff_factor`` < 1, ``growth_interval``
    >= 1 good steps. Only gradients of the optimiser's parameters are unscaled and checked.
    """

    def __init__(self, init_scale: float = 2.0 ** 16, growth_factor: float = 2.0,
                 backoff_factor: float = 0.5, growth_interval: int = 2000) -> None:
        if not (math.isfinite(init_scale) and init_scale > 0):
            raise ValueError(f"init_scale must be a finite number > 0, got {init_scale}")
        if not growth_factor > 1.0:
            raise ValueError(f"growth_factor must be > 1, got {growth_factor}")
        if not 0.0 < backoff_factor < 1.0:
            raise ValueError(f"backoff_factor must be in (0, 1), got {backoff_factor}")
        if growth_interval < 1:
            raise ValueError(f"growth_interval must be >= 1, got {growth_interval}")
        self.scale = float(init_scale)
        self.growth_factor = float(growth_factor)
        self.backoff_factor = float(backoff_factor)
        self.growth_interval = int(growth_interval)
        self.good_steps = 0  # consecutive steps without inf/NaN since S last changed
        self._found_inf: bool | None = None  # this iteration's verdict; None until unscale_()

    @property
    def found_inf(self) -> bool | None:
        """Whether this iteration's gradients held inf/NaN (on any rank); None before :meth:`unscale_`."""
        return self._found_inf

    def scale_loss(self, loss: torch.Tensor) -> torch.Tensor:
        """``loss * S``: call ``backward()`` on this instead of on ``loss``."""
        return loss * self.scale

    def unscale_(self, optimizer: torch.optim.Optimizer) -> None:
        """Divide the gradients of ``optimizer``'s parameters by S in place and record whether
        any is inf or NaN (on any rank). Once per iteration, before :meth:`step`."""
        if self._found_inf is not None:
            raise RuntimeError("unscale_() was already called since the last update()")
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if any(g.is_sparse for g in grads):
            raise NotImplementedError("DynamicLossScaler does not handle sparse gradients")
        inverse = 1.0 / self.scale
        finite_flags = []
        with torch.no_grad():
            for grad in grads:
                grad.mul_(inverse)  # checked after unscaling: a finite grad * 1/S may overflow when S < 1
                finite_flags.append(torch.isfinite(grad).all())
        device = grads[0].device if grads else torch.device("cpu")
        all_finite_here = bool(torch.stack(finite_flags).all()) if finite_flags else True
        self._found_inf = not all_ranks_true(all_finite_here, device)

    def step(self, optimizer: torch.optim.Optimizer) -> bool:
        """``optimizer.step()`` unless the gradients held inf/NaN; True when it stepped.
        Unscales first if :meth:`unscale_` was not called this iteration."""
        if self._found_inf is None:
            self.unscale_(optimizer)
        if self._found_inf:
            return False
        optimizer.step()
        return True

    def update(self) -> None:
        """Adjust S for the next iteration: times ``backoff_factor`` after a step with inf/NaN,
        times ``growth_factor`` after ``growth_interval`` consecutive good steps (if finite)."""
        if self._found_inf is None:
            raise RuntimeError("update() needs unscale_() or step() first in this iteration")
        if self._found_inf:
            self.scale *= self.backoff_factor
            self.good_steps = 0
        else:
            self.good_steps += 1
            if self.good_steps == self.growth_interval:
                grown = self.scale * self.growth_factor
                if math.isfinite(grown):
                    self.scale = grown
                self.good_steps = 0
        self._found_inf = None

    def state_dict(self) -> dict[str, Any]:
        """Plain floats and ints: the scale, the rule's settings and the good-step count."""
        return {"scale": self.scale, "growth_factor": self.growth_factor,
                "backoff_factor": self.backoff_factor, "growth_interval": self.growth_interval,
                "good_steps": self.good_steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (between iterations)."""
        self.scale = float(state["scale"])
        self.growth_factor = float(state["growth_factor"])
        self.backoff_factor = float(state["backoff_factor"])
        self.growth_interval = int(state["growth_interval"])
        self.good_steps = int(state["good_steps"])
        self._found_inf = None
