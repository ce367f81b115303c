import numpy as np

from deepshrink.codec import sparse


def test_fillers_by_hand():
    # non-zeros at 1, 4, 20 with 3-bit skips (at most 7): the gap of 15 zeros before 20 needs
    # one filler at position 12 (skip 7), then 20 skips 7 more
    skips, is_filler = sparse.relative_indices(np.array([1, 4, 20]), 3)
    assert skips.tolist() == [1, 2, 7, 7]
    assert is_filler.tolist() == [False, False, True, False]
    assert sparse.positions_from_skips(skips).tolist() == [1, 4, 12, 20]
    assert sparse.filler_count(sparse.gaps(np.array([1, 4, 20])), 3) == 1
    assert sparse.skip_counts(sparse.gaps(np.array([1, 4, 20])), 3).tolist() == [0, 1, 1, 0, 0, 0, 0, 2]


def test_round_trip_of_random_positions():
    rng = np.random.default_rng(1)
    positions = np.flatnonzero(rng.random(5000) < 0.05)
    for width in (1, 2, 5, 8):
        skips, is_filler = sparse.relative_indices(positions, width)
        assert skips.max() < 2**width
        back = sparse.positions_from_skips(skips)
        assert np.array_equal(back[~is_filler], positions)
        assert is_filler.sum() == sparse.filler_count(sparse.gaps(positions), width)
        assert (skips[is_filler] == 2**width - 1).all()
        # the encoder sizes each width from skip_counts alone: it must count the real skips
        assert np.array_equal(sparse.skip_counts(sparse.gaps(positions), width),
                              np.bincount(skips, minlength=2**width))


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


def _reference_relative_indices(positions, width):
    """The first implementation (one filler rank per entry), kept as the oracle."""
    gap = sparse.gaps(positions)
    fillers = gap >> width
    per_position = fillers + 1
    owner = np.repeat(np.arange(gap.size), per_position)
    rank = np.arange(owner.size) - np.repeat(np.cumsum(per_position) - per_position, per_position)
    is_filler = rank < fillers[owner]
    skips = np.where(is_filler, (1 << width) - 1, gap[owner] & ((1 << width) - 1))
    return skips, is_filler


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 5000), max_size=300, unique=True), st.integers(1, sparse.MAX_INDEX_WIDTH))
def test_relative_indices_match_the_reference(positions, width):
    positions = np.sort(np.array(positions, dtype=np.int64))
    skips, is_filler = sparse.relative_indices(positions, width)
    expected_skips, expected_filler = _reference_relative_indices(positions, width)
    assert skips.dtype == expected_skips.dtype and np.array_equal(skips, expected_skips)
    assert np.array_equal(is_filler, expected_filler)
    assert np.array_equal(sparse.positions_from_skips(skips)[~is_filler], positions)
