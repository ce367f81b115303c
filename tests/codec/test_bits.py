import numpy as np
import pytest

from deepshrink.codec.bits import pack_uint, unpack_uint


def test_pack_by_hand():
    # 01 10 11 -> 0110 1100 = 0x6C
    assert pack_uint(np.array([1, 2, 3]), 2) == b"\x6c"
    assert pack_uint(np.array([5, 10]), 4) == b"\x5a"


def test_round_trip_of_every_width():
    rng = np.random.default_rng(0)
    for width in (1, 3, 4, 7, 12, 33, 64):
        values = rng.integers(0, 2**min(width, 63), size=101, dtype=np.uint64)
        values[:2] = [2**width - 1, 0]  # every bit set (the top one too: the draw stops at 2**63), none set
        data = pack_uint(values, width)
        assert len(data) == (101 * width + 7) // 8
        assert np.array_equal(unpack_uint(data, width, 101), values)


def test_errors():
    with pytest.raises(ValueError, match="does not fit"):
        pack_uint(np.array([4]), 2)
    with pytest.raises(ValueError, match="cannot hold"):
        unpack_uint(b"\x00", 4, 3)
