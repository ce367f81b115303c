"""The coverage matrix (benchmarks/coverage_matrix.py) stays runnable: its deepshrink side on a
few pattern models reaches the 40 % MAC target with outputs equal to the zeroed dense model."""

import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[3] / "benchmarks"


@pytest.fixture(scope="module")
def matrix():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import coverage_matrix
        yield coverage_matrix
    finally:
        sys.path.remove(str(BENCHMARKS))


@pytest.mark.parametrize("name", ["channel shuffle", "squeeze-excitation", "module called twice",
                                  "transposed conv + upsample"])
def test_deepshrink_side_of_the_matrix(matrix, name):
    factory, shape, classifier = matrix.CORPUS[name]
    row = matrix.run_deepshrink(factory, shape, classifier)
    assert row.handled, row.error
    assert row.forward and row.outputs_ok and row.setting == "target 40%"
    assert 0.4 <= row.macs_reduction < 0.45


def test_table_reports_failures_in_one_line(matrix):
    ok = matrix.Row(handled=True, setting="target 40%", macs_reduction=0.41, max_diff=0.0, forward=True)
    bad = matrix.Row(handled=False, error="RuntimeError: shapes differ")
    text = matrix.table({"m": (ok, bad)})
    assert "| m | yes | 41.0% (target 40%) | 0.0e+00 (ok) | yes | **no** |" in text
    assert "- m, Torch-Pruning: `RuntimeError: shapes differ`" in text
