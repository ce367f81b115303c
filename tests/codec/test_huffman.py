import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
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


# ---- the fast paths against oracles ------------------------------------------------------------


def _oracle_encode(symbols, lengths) -> tuple[bytes, int]:
    """One code at a time, as a string of '0'/'1' (the definition of the format)."""
    codes = huffman.canonical_codes(lengths)
    bits = "".join(format(int(codes[s]), f"0{int(lengths[s])}b") for s in symbols)
    padded = bits + "0" * (-len(bits) % 8)
    return int(padded, 2).to_bytes(len(padded) // 8, "big") if padded else b"", len(bits)


@st.composite
def _codes_and_streams(draw, max_size=3000):
    """A prefix code (complete or not, any lengths up to 15 bits) and a stream of its symbols."""
    alphabet = draw(st.integers(1, 70))
    counts = np.array(draw(st.lists(st.integers(0, 1000), min_size=alphabet, max_size=alphabet)))
    counts[draw(st.integers(0, alphabet - 1))] += 1
    used = int((counts > 0).sum())
    limit = draw(st.integers(max(1, (used - 1).bit_length()), huffman.MAX_CODE_LENGTH))
    lengths = huffman.code_lengths(counts, max_length=limit).astype(np.int64)
    symbols_used = np.flatnonzero(lengths)
    if symbols_used.size > 2 and draw(st.booleans()):  # an incomplete code: drop some codes
        lengths[draw(st.sampled_from(symbols_used.tolist()))] = 0
        symbols_used = np.flatnonzero(lengths)
    seed = draw(st.integers(0, 2**32 - 1))
    size = draw(st.integers(0, max_size))
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.full(symbols_used.size, draw(st.sampled_from([0.2, 1.0, 5.0]))))
    symbols = rng.choice(symbols_used, size=size, p=weights)
    return symbols, lengths


@pytest.fixture
def lanes_everywhere(monkeypatch):
    """Decode even short streams in many short lanes with little warm-up, so the checks and
    repairs between lanes run on small examples."""
    monkeypatch.setattr(huffman, "_LANES_FROM_BITS", 0)
    monkeypatch.setattr(huffman, "_LANE_BITS", 64)
    monkeypatch.setattr(huffman, "_WARMUP_BITS", 8)


@settings(max_examples=150, deadline=None)
@given(_codes_and_streams())
def test_encode_is_bit_identical_to_the_reference_and_the_oracle(case):
    symbols, lengths = case
    expected = huffman._reference_encode(symbols, lengths)
    assert huffman.encode(symbols, lengths) == expected
    assert huffman.encode(symbols.astype(np.uint16), lengths) == expected  # any integer type
    if symbols.size <= 500:
        assert _oracle_encode(symbols, lengths) == expected


@settings(max_examples=150, deadline=None)
@given(_codes_and_streams())
def test_decode_round_trips_by_every_path(case):
    symbols, lengths = case
    data, _ = huffman.encode(symbols, lengths)
    back = huffman.decode(data, lengths, symbols.size)
    assert back.dtype == np.int64 and np.array_equal(back, symbols)
    if symbols.size and lengths[lengths > 0].min() != lengths.max():
        assert np.array_equal(huffman._decode_by_pointer_doubling(data, lengths, symbols.size), symbols)
        if 8 * len(data) >= 64:
            top = int(lengths.max())
            assert np.array_equal(huffman._decode_in_lanes(data, lengths, symbols.size, top), symbols)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_codes_and_streams(max_size=600), st.data())
def test_damaged_streams_decode_like_the_reference_in_lanes(lanes_everywhere, case, data):
    """Flipped bits, a wrong count, a dropped code: the lane decoder gives the reference's
    symbols or, like it, a ValueError."""
    symbols, lengths = case
    stream, _ = huffman.encode(symbols, lengths)
    damaged = bytearray(stream)
    for _ in range(data.draw(st.integers(0, 3)) if damaged else 0):
        damaged[data.draw(st.integers(0, len(damaged) - 1))] ^= 1 << data.draw(st.integers(0, 7))
    if damaged and data.draw(st.booleans()):
        del damaged[data.draw(st.integers(0, len(damaged) - 1))]
    count = max(0, symbols.size + data.draw(st.integers(-3, 3)))
    outcomes = []
    for decoder in (huffman._decode_by_pointer_doubling, huffman.decode):
        try:
            outcomes.append(decoder(bytes(damaged), lengths, count).tolist())
        except (ValueError, IndexError) as exc:  # the reference is only called on counts > 0
            outcomes.append(type(exc))
    if count == 0 or not damaged:
        assert outcomes[1] == ValueError or outcomes[1] == []
    else:
        assert outcomes[1] == (ValueError if isinstance(outcomes[0], type) else outcomes[0])


def test_codes_that_never_resynchronise_are_chained_exactly(lanes_everywhere, monkeypatch):
    # 0, 10, 110, 111: a run of 111 read from the wrong bit stays wrong, so every lane's
    # speculation fails, one retry fixes only every other lane, and the exact chaining runs
    calls = []
    chain = huffman._Lanes.chain_exactly
    monkeypatch.setattr(huffman._Lanes, "chain_exactly", lambda self, first: (calls.append(first), chain(self, first)))
    lengths = np.array([1, 2, 3, 3])
    symbols = np.concatenate([[0, 1, 2], np.full(5000, 3), [1, 0]])
    data, _ = huffman.encode(symbols, lengths)
    assert np.array_equal(huffman.decode(data, lengths, symbols.size), symbols)
    assert calls


def test_a_damaged_stream_that_breaks_in_a_lane_is_an_error(lanes_everywhere):
    lengths = np.array([1, 2, 0, 3])  # 0, 10, 110 unused -> invalid, 111
    symbols = np.random.default_rng(3).choice([0, 1, 3], size=4000)
    data = bytearray(huffman.encode(symbols, lengths)[0])
    data[len(data) // 2] = 0b11011011  # 110 is no code
    with pytest.raises(ValueError, match="invalid code"):
        huffman.decode(bytes(data), lengths, symbols.size)


def test_one_symbol_empty_stream_and_the_longest_codes():
    assert huffman.encode(np.zeros(0, dtype=np.int64), np.array([1])) == (b"", 0)
    assert huffman.decode(b"", np.array([1]), 0).size == 0
    one = np.full(20_001, 4)
    lengths = huffman.code_lengths(np.bincount(one))
    data, bits = huffman.encode(one, lengths)
    assert (data, bits) == (bytes(2501), 20_001)  # a single symbol codes as one 0 bit
    assert np.array_equal(huffman.decode(data, lengths, one.size), one)
    with pytest.raises(ValueError, match="invalid code"):
        huffman.decode(b"\x80" + bytes(2500), lengths, one.size)
    # 15-bit codes: 2**15 symbols of one length, and a skewed code reaching the limit
    flat = np.random.default_rng(1).integers(0, 1 << 15, 50_000)
    lengths = np.full(1 << 15, 15)
    data, _ = huffman.encode(flat, lengths)
    assert data == huffman._reference_encode(flat, lengths)[0]
    assert np.array_equal(huffman.decode(data, lengths, flat.size), flat)
    deep = np.minimum(np.random.default_rng(2).geometric(0.5, 100_000) - 1, 40)
    lengths = huffman.code_lengths(np.bincount(deep))
    assert lengths.max() == huffman.MAX_CODE_LENGTH
    data, _ = huffman.encode(deep, lengths)
    assert data == huffman._reference_encode(deep, lengths)[0]
    assert np.array_equal(huffman.decode(data, lengths, deep.size), deep)


@pytest.mark.parametrize("alphabet,p", [(17, 0.5), (4096, 0.02), (256, 0.05)])
def test_streams_of_more_than_a_million_symbols(alphabet, p):
    rng = np.random.default_rng(alphabet)
    symbols = np.minimum(rng.geometric(p, 1_200_000) - 1, alphabet - 1)
    symbols[:alphabet] = np.arange(alphabet)  # every symbol used
    lengths = huffman.code_lengths(np.bincount(symbols))
    data, bits = huffman.encode(symbols, lengths)
    assert (data, bits) == huffman._reference_encode(symbols, lengths)
    assert np.array_equal(huffman.decode(data, lengths, symbols.size), symbols)


def test_hostile_counts_and_tables_fail_before_allocating():
    lengths = np.array([1, 2, 2])
    with pytest.raises(ValueError, match="cannot hold"):
        huffman.decode(b"\x00" * 16, lengths, 10**15)  # would be 8 PB of int64
    with pytest.raises(ValueError, match="does not match"):
        huffman.decode(b"\x00" * 10**6, lengths, 3)  # 3 codes of at most 2 bits in 8 Mbit
    with pytest.raises(ValueError, match="over-subscribed"):
        huffman.decode(b"\x00", np.array([1, 1, 2]), 1)
    with pytest.raises(ValueError, match="must lie in"):
        huffman.decode(b"\x00", np.array([16, 1]), 1)
    with pytest.raises(ValueError, match="negative"):
        huffman.decode(b"\x00", lengths, -1)
    with pytest.raises(ValueError, match="no code"):
        huffman.encode(np.array([0, 3]), lengths)
    with pytest.raises(ValueError, match="no code"):
        huffman.encode(np.array([0, 1]), np.array([1, 0, 0]))
