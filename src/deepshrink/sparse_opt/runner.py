"""Running the methods: full-batch iterations from W0 = 0, and the classic suite of settings."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deepshrink.errors import UserError
from deepshrink.sparse_opt import methods
from deepshrink.sparse_opt.problem import LeastSquares

__all__ = ["Trajectory", "classic_suite", "optimize", "run_suite"]

L1_LAMBDAS = (0.2, 0.5, 1.0, 2.0)
PROXIMAL_THRESHOLDS = (0.004, 0.01, 0.02, 0.04)
TRIMMED_LAMBDAS = (1.0, 2.0, 5.0, 10.0)


@dataclass(frozen=True)
class Trajectory:
    """Weights (steps + 1, d) and losses (steps + 1,) from W0 through the last step."""

    weights: np.ndarray
    losses: np.ndarray

    @property
    def final(self) -> dict:
        """``{"W": [...], "L": float}`` after the last step (-0.0 shown as 0.0)."""
        return {"W": (self.weights[-1] + 0.0).tolist(), "L": float(self.losses[-1])}


def optimize(problem: LeastSquares, step: methods.Step, *, steps: int = 200, lr: float = 0.02,
             w0: np.ndarray | None = None) -> Trajectory:
    """Iterate W <- step(W, ∇L(W), lr) ``steps`` times from ``w0`` (default zeros)."""
    w = np.zeros(problem.dim) if w0 is None else np.asarray(w0, dtype=np.float64)
    weights, losses = [w], [problem.loss(w)]
    for _ in range(steps):
        w = step(w, problem.gradient(w), lr)
        weights.append(w)
        losses.append(problem.loss(w))
    return Trajectory(np.stack(weights), np.array(losses))


def classic_suite(k: int = 2) -> dict[str, methods.Step]:
    """Every method and setting of the classic experiment, keyed ``method`` or ``method/setting``."""
    suite: dict[str, methods.Step] = {"gd": methods.gradient_descent(), f"projected/k={k}": methods.projected(k)}
    suite.update({f"l1/lambda={lam:g}": methods.l1_subgradient(lam) for lam in L1_LAMBDAS})
    suite.update({f"proximal/threshold={t:g}": methods.proximal_l1(t) for t in PROXIMAL_THRESHOLDS})
    suite.update({f"trimmed_l1/lambda={lam:g},k={k}": methods.trimmed_l1(lam, k) for lam in TRIMMED_LAMBDAS})
    return suite


def run_suite(problem: LeastSquares, *, steps: int = 200, lr: float = 0.02, k: int = 2) -> dict[str, Trajectory]:
    """:func:`optimize` with every entry of :func:`classic_suite`."""
    if steps < 1 or not lr > 0:
        raise UserError(f"steps must be >= 1 and the step size > 0; got {steps} and {lr}")
    if not 1 <= k <= problem.dim:
        raise UserError(f"k must lie in [1, {problem.dim}] (the number of weights), got {k}")
    with np.errstate(over="ignore", invalid="ignore"):
        return {name: optimize(problem, step, steps=steps, lr=lr) for name, step in classic_suite(k).items()}
