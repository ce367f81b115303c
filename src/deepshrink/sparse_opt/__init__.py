"""Sparse optimization of a linear least-squares model (numpy): plain, projected, L1,
proximal and trimmed-L1 gradient descent, the classic five-weight problem, and plots."""

from deepshrink.sparse_opt.problem import LeastSquares, classic_problem, load_problem
from deepshrink.sparse_opt.runner import Trajectory, classic_suite, optimize, run_suite

__all__ = ["LeastSquares", "Trajectory", "classic_problem", "classic_suite", "load_problem", "optimize",
           "run_suite"]
