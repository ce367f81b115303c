"""The least-squares problem and each method's first steps against hand-computed updates."""

import numpy as np
import pytest

from deepshrink.errors import UserError
from deepshrink.sparse_opt import LeastSquares, classic_problem, load_problem, optimize, run_suite
from deepshrink.sparse_opt import methods

# By hand for the classic problem (W0 = 0, η = 0.02): Xᵀy = [8, -15, -3, -5, 6], so
# ∇L(0) = -2Xᵀy and W − η∇L(0) = Z1 below.
GRAD0 = [-16.0, 30.0, 6.0, 10.0, -12.0]
Z1 = [0.32, -0.6, -0.12, -0.2, 0.24]


def _first_steps(step, count):
    return optimize(classic_problem(), step, steps=count, lr=0.02).weights


def test_loss_and_gradient_definitions():
    problem = classic_problem()
    assert problem.loss(np.zeros(5)) == 51.0  # 7² + 1² + 1²
    assert problem.loss(np.array([0.0, -3.0, 0.0, 0.0, 1.0])) == 0.0
    np.testing.assert_allclose(problem.gradient(np.zeros(5)), GRAD0)
    w = np.array(Z1)
    assert problem.loss(w) == pytest.approx(27.3952)  # residuals -4.92, -0.48, -1.72
    np.testing.assert_allclose(problem.gradient(w), [-8.32, 20.64, 1.04, 2.96, -11.36])
    eps, direction = 1e-6, np.array([0.3, -0.1, 0.2, 0.5, -0.4])
    numeric = (problem.loss(w + eps * direction) - problem.loss(w - eps * direction)) / (2 * eps)
    assert numeric == pytest.approx(problem.gradient(w) @ direction, rel=1e-6)


def test_gradient_descent_first_two_steps():
    weights = _first_steps(methods.gradient_descent(), 2)
    np.testing.assert_allclose(weights[1], Z1)
    np.testing.assert_allclose(weights[2], [0.4864, -1.0128, -0.1408, -0.2592, 0.4672])


def test_l1_subgradient_uses_sign_zero_at_zero_then_adds_lambda_sign():
    weights = _first_steps(methods.l1_subgradient(1.0), 2)
    np.testing.assert_allclose(weights[1], Z1)
    np.testing.assert_allclose(weights[2], [0.4664, -0.9928, -0.1208, -0.2392, 0.4472])


def test_projected_keeps_the_k_largest():
    weights = _first_steps(methods.projected(2), 2)
    np.testing.assert_allclose(weights[1], [0.32, -0.6, 0.0, 0.0, 0.0])
    np.testing.assert_allclose(weights[2], [0.4672, -1.0288, 0.0, 0.0, 0.0])


@pytest.mark.parametrize("k", [1, 2, 3])
def test_projected_never_has_more_than_k_nonzeros(k):
    weights = optimize(classic_problem(), methods.projected(k), steps=200, lr=0.02).weights
    assert max(np.count_nonzero(w) for w in weights) <= k


def test_proximal_soft_thresholds():
    weights = _first_steps(methods.proximal_l1(0.04), 1)
    np.testing.assert_allclose(weights[1], [0.28, -0.56, -0.08, -0.16, 0.20])


def test_trimmed_l1_spares_the_k_largest_and_shrinks_the_rest_by_lr_times_lambda():
    weights = _first_steps(methods.trimmed_l1(5.0, 2), 1)  # threshold 0.02 * 5 = 0.1
    np.testing.assert_allclose(weights[1], [0.32, -0.6, -0.02, -0.1, 0.14])


def test_classic_suite_finds_the_sparse_solution():
    runs = run_suite(classic_problem())
    assert len(runs) == 14
    np.testing.assert_allclose(runs["projected/k=2"].final["W"], [0, -3, 0, 0, 1], atol=1e-9)
    np.testing.assert_allclose(runs["trimmed_l1/lambda=10,k=2"].final["W"], [0, -3, 0, 0, 1], atol=1e-9)
    assert runs["gd"].final["L"] < 1e-20 and np.count_nonzero(runs["gd"].final["W"]) == 5
    # stronger shrinkage: fewer non-zeros, larger final loss
    losses = [runs[f"proximal/threshold={t}"].final["L"] for t in ("0.004", "0.01", "0.02", "0.04")]
    assert losses == sorted(losses)
    assert runs["gd"].weights.shape == (201, 5) and runs["gd"].losses[0] == 51.0


def test_suite_rejects_bad_settings():
    with pytest.raises(UserError, match="k must"):
        run_suite(classic_problem(), k=6)
    with pytest.raises(UserError):
        LeastSquares(np.ones((3, 2)), np.ones(2))


def test_problem_from_csv_and_npz(tmp_path):
    problem = classic_problem()
    csv = tmp_path / "data.csv"
    table = np.column_stack([problem.X, problem.y])
    csv.write_text("x1,x2,x3,x4,x5,y\n" + "\n".join(",".join(map(str, row)) for row in table))
    npz = tmp_path / "data.npz"
    np.savez(npz, X=problem.X, y=problem.y)
    for path in (csv, npz):
        loaded = load_problem(path)
        np.testing.assert_array_equal(loaded.X, problem.X)
        np.testing.assert_array_equal(loaded.y, problem.y)
    (tmp_path / "bad.csv").write_text("1,2\n3,oops\n")
    for bad in (tmp_path / "bad.csv", tmp_path / "missing.npz", tmp_path / "data.txt"):
        with pytest.raises(UserError):
            load_problem(bad)
