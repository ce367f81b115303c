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


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from deepshrink.codec.bits import pack_codes, windows  # noqa: E402


def _oracle(codes, sizes) -> bytes:
    bits = "".join(format(int(c), f"0{int(s)}b") for c, s in zip(codes, sizes))
    bits += "0" * (-len(bits) % 8)
    return int(bits, 2).to_bytes(len(bits) // 8, "big") if bits else b""


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 64), max_size=300), st.integers(0, 2**32 - 1))
def test_pack_codes_matches_the_bit_string_oracle(sizes, seed):
    rng = np.random.default_rng(seed)
    sizes = np.array(sizes, dtype=np.uint8)
    codes = np.array([int(rng.integers(0, 2**63)) * 2 % (1 << int(s)) | (1 << (int(s) - 1)) * int(rng.integers(0, 2))
                      for s in sizes], dtype=np.uint64)
    data, nbits = pack_codes(codes, sizes)
    assert nbits == int(sizes.astype(int).sum()) and data == _oracle(codes, sizes)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 64), st.integers(0, 200), st.integers(0, 2**32 - 1))
def test_pack_uint_matches_the_oracle_and_round_trips(width, count, seed):
    rng = np.random.default_rng(seed)
    values = np.array([int(rng.integers(0, 2**62)) * 4 % (1 << width) for _ in range(count)], dtype=np.uint64)
    if count:
        values[0] = (1 << width) - 1
    data = pack_uint(values, width)
    assert data == _oracle(values, [width] * count)
    assert np.array_equal(unpack_uint(data + b"\xff", width, count), values)  # trailing bytes ignored


def test_windows_read_zeros_past_the_end():
    data = bytes([0b10110011, 0b01011100])
    assert windows(data, np.array([0, 3, 9, 14, 16], dtype=np.uint64), 5).tolist() == [
        0b10110, 0b10011, 0b10111, 0b00000, 0]
