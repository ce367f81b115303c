import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepshrink.codec import huffman


def test_code_lengths_of_the_textbook_example():
    # CLRS 16.3: a:45 b:13 c:12 d:16 e:9 f:5 -> a 1 bit, b c d 3 bits, e f 4 bits
    lengths = huffman.code_lengths(np.array([45, 13, 12, 16, 9, 5]))
    assert lengths.tolist() == [1, 3, 3, 3, 4, 4]


def test_unused_and_single_symbols():
    assert huffman.code_lengths(np.array([0, 7, 0])).tolist() == [0, 1, 0]
    assert huffman.code_lengths(np.array([0, 0])).tolist() == [0, 0]


def test_canonical_codes_and_encoding_by_hand():
    lengths = np.array([2, 1, 3, 3])  # canonical: 1 -> 0, 0 -> 10, 2 -> 110, 3 -> 111
    assert huffman.canonical_codes(lengths).tolist() == [0b10, 0b0, 0b110, 0b111]
    data, bits = huffman.encode(np.array([1, 0, 3]), lengths)  # 0 10 111 -> 0101 1100
    assert (data, bits) == (b"\x5c", 6)
    assert huffman.decode(data, lengths, 3).tolist() == [1, 0, 3]


def test_length_limit_keeps_a_prefix_code_and_stays_near_optimal():
    counts = np.array([1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610, 987, 1597, 2584, 4181, 6765])
    free = huffman.code_lengths(counts, max_length=32)
    assert free.max() == 19  # Fibonacci frequencies give the deepest tree
    limited = huffman.code_lengths(counts, max_length=8)
    assert limited.max() == 8
    assert (2.0 ** -limited.astype(float)).sum() == 1.0  # a complete prefix code
    cost = lambda lengths: (counts * lengths).sum()  # noqa: E731
    assert cost(free) <= cost(limited) <= 1.1 * cost(free)


def test_default_limit_of_15_bits_round_trips_a_deep_fibonacci_alphabet():
    fib = [1, 1]  # Fibonacci counts over 25 symbols: an unlimited tree 24 deep
    while len(fib) < 25:
        fib.append(fib[-1] + fib[-2])
    counts = np.array(fib)
    assert huffman.code_lengths(counts, max_length=32).max() == 24
    lengths = huffman.code_lengths(counts)
    assert lengths.max() == huffman.MAX_CODE_LENGTH and (2.0 ** -lengths.astype(float)).sum() == 1.0
    huffman.check_lengths(lengths)
    symbols = np.random.default_rng(0).permutation(np.repeat(np.arange(25), np.minimum(counts, 50)))
    data, bits = huffman.encode(symbols, lengths)
    assert bits == int(lengths[symbols].sum())
    assert np.array_equal(huffman.decode(data, lengths, symbols.size), symbols)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 40), min_size=1, max_size=400), st.integers(0, 3))
def test_round_trip_and_bits_within_entropy_plus_one(symbols, skew):
    symbols = np.array(symbols) // (1 + skew)
    lengths = huffman.code_lengths(np.bincount(symbols))
    data, bits = huffman.encode(symbols, lengths)
    assert len(data) == (bits + 7) // 8
    assert np.array_equal(huffman.decode(data, lengths, symbols.size), symbols)
    entropy = huffman.entropy_bits(symbols)
    assert entropy - 1e-9 <= bits / symbols.size <= entropy + 1 + 1e-9  # one symbol: 1 bit, entropy 0
    used = lengths[lengths > 0].astype(float)
    assert (2.0 ** -used).sum() == (0.5 if used.size == 1 else 1.0)  # a complete prefix code


def test_large_stream_round_trip():
    rng = np.random.default_rng(0)
    symbols = np.minimum(rng.geometric(0.2, 200_000) - 1, 200)
    lengths = huffman.code_lengths(np.bincount(symbols))
    data, _ = huffman.encode(symbols, lengths)
    assert np.array_equal(huffman.decode(data, lengths, symbols.size), symbols)


def test_entropy_by_hand():
    assert huffman.entropy_bits(np.array([0, 1, 2, 3])) == pytest.approx(2.0)
    assert huffman.entropy_bits(np.array([5, 5, 5])) == 0.0
    assert huffman.entropy_bits(np.array([0, 0, 0, 1])) == pytest.approx(0.8112781245)


@pytest.mark.parametrize("data,lengths,count,needle", [
    (b"\x5c", [1, 1, 1], 3, "over-subscribed"),
    (b"\x5c", [2, 1, 3, 3], 6, "invalid code"),
    (b"\x5c\x00", [2, 1, 3, 3], 3, "does not match"),
    (b"\x5d", [2, 1, 3, 3], 3, "padding"),
    (b"\x5c", [2, 1, 3, 3], 9, "cannot hold"),
    (b"\xff", [1, 0, 2], 4, "invalid code"),  # 11 is no code of {0, 10}
])
def test_corrupt_streams_are_value_errors(data, lengths, count, needle):
    with pytest.raises(ValueError, match=needle):
        huffman.decode(data, np.array(lengths), count)
