"""The least-squares problem L(W) = Σ_i (X_i W − y_i)², its gradient, and where X and y come from."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepshrink.errors import UserError

__all__ = ["LeastSquares", "classic_problem", "load_problem"]


@dataclass(frozen=True)
class LeastSquares:
    """Samples ``X`` (n, d) and targets ``y`` (n,), float64."""

    X: np.ndarray
    y: np.ndarray

    def __post_init__(self) -> None:
        if self.X.ndim != 2 or self.y.shape != (self.X.shape[0],) or self.X.shape[0] == 0:
            raise UserError(f"X must be (n, d) and y (n,) with n >= 1; got {self.X.shape} and {self.y.shape}")
        if not (np.isfinite(self.X).all() and np.isfinite(self.y).all()):
            raise UserError("X and y must be finite numbers")

    @property
    def dim(self) -> int:
        return self.X.shape[1]

    def loss(self, W: np.ndarray) -> float:
        """L(W) = Σ_i (X_i W − y_i)²."""
        residual = self.X @ W - self.y
        return float(residual @ residual)

    def gradient(self, W: np.ndarray) -> np.ndarray:
        """∇L(W) = 2 Xᵀ (X W − y), shape (d,)."""
        return 2.0 * self.X.T @ (self.X @ W - self.y)


def classic_problem() -> LeastSquares:
    """Five weights, three samples: the textbook sparse-regression example."""
    X = np.array([[1, -2, -1, -1, 1], [2, -1, 2, 0, -2], [-1, 0, 2, 2, 1]], dtype=np.float64)
    return LeastSquares(X, np.array([7, 1, 1], dtype=np.float64))


def load_problem(path: str | os.PathLike) -> LeastSquares:
    """X and y from ``.npz`` (arrays ``X`` and ``y``) or ``.csv`` (one sample per row, y last;
    an optional header row is skipped)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no such data file: {path}")
    if path.suffix == ".npz":
        return _from_npz(path)
    if path.suffix == ".csv":
        return _from_csv(path)
    raise UserError(f"{path}: data must be a .csv or .npz file")


def _from_npz(path: Path) -> LeastSquares:
    try:
        with np.load(path, allow_pickle=False) as data:
            if "X" not in data or "y" not in data:
                raise UserError(f"{path} must hold arrays 'X' and 'y'")
            return LeastSquares(data["X"].astype(np.float64), data["y"].astype(np.float64).reshape(-1))
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None


def _from_csv(path: Path) -> LeastSquares:
    table = None
    for skip in (0, 1):
        try:
            table = np.loadtxt(path, delimiter=",", skiprows=skip, ndmin=2, dtype=np.float64)
            break
        except ValueError:
            continue
    if table is None or table.shape[1] < 2 or table.shape[0] == 0:
        raise UserError(f"{path}: expected rows of numbers, features then y (at least 2 columns)")
    return LeastSquares(table[:, :-1], table[:, -1])
