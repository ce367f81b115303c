"""Shared fixtures: paths to the optional real data beside the repository."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data`` (real CIFAR-10 and pretrained checkpoints); skips when absent."""
    if not (SHARED_DATA / "cifar10_test.npz").is_file():
        pytest.skip(f"real data not available at {SHARED_DATA}")
    return SHARED_DATA
