"""One full-batch update W -> W' for each method, given the loss gradient ∇L(W) and the step η.

- gradient descent: W − η∇L
- projected gradient descent (iterative hard thresholding): the k largest-magnitude entries
  of W − η∇L, the rest set to 0
- L1 subgradient: W − η(∇L + λ·sign(W)), with sign(0) = 0
- proximal gradient: soft thresholding of W − η∇L by ``threshold``: sign(z)·max(|z| − θ, 0)
- trimmed L1 (penalty λ·Σ|w_i| over all but the k largest-magnitude entries): its proximal
  step keeps the k largest-magnitude entries of W − η∇L and soft-thresholds the rest by η·λ
"""

from __future__ import annotations

from typing import Callable

import numpy as np

__all__ = ["Step", "gradient_descent", "keep_largest", "l1_subgradient", "largest", "projected", "proximal_l1",
           "soft_threshold", "trimmed_l1"]

Step = Callable[[np.ndarray, np.ndarray, float], np.ndarray]  # (W, ∇L(W), η) -> next W


def largest(w: np.ndarray, k: int) -> np.ndarray:
    """Boolean mask of the k largest-magnitude entries of ``w`` (ties: the lower index wins)."""
    mask = np.zeros(w.shape, dtype=bool)
    mask[np.argsort(-np.abs(w), kind="stable")[:k]] = True
    return mask


def keep_largest(w: np.ndarray, k: int) -> np.ndarray:
    """``w`` with all but its k largest-magnitude entries set to 0."""
    return np.where(largest(w, k), w, 0.0)


def soft_threshold(z: np.ndarray, threshold: float) -> np.ndarray:
    """sign(z)·max(|z| − threshold, 0), the proximal operator of threshold·‖·‖₁."""
    return np.sign(z) * np.maximum(np.abs(z) - threshold, 0.0)


def gradient_descent() -> Step:
    return lambda w, grad, lr: w - lr * grad


def projected(k: int) -> Step:
    return lambda w, grad, lr: keep_largest(w - lr * grad, k)


def l1_subgradient(lam: float) -> Step:
    return lambda w, grad, lr: w - lr * (grad + lam * np.sign(w))


def proximal_l1(threshold: float) -> Step:
    return lambda w, grad, lr: soft_threshold(w - lr * grad, threshold)


def trimmed_l1(lam: float, k: int) -> Step:
    def step(w: np.ndarray, grad: np.ndarray, lr: float) -> np.ndarray:
        z = w - lr * grad
        return np.where(largest(z, k), z, soft_threshold(z, lr * lam))

    return step
