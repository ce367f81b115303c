import numpy as np
import pytest

from deepshrink.codec import sparse
from deepshrink.codec.layer import decode_tensor, encode_float, encode_quantized
from deepshrink.codec.stream import CodedStream


def _quantized(shape, groups, k, sparsity, seed=0, with_zero_entry=False):
    rng = np.random.default_rng(seed)
    codebook = rng.normal(size=(groups, k)).astype(np.float32)
    if with_zero_entry:
        codebook[:, 0] = 0.0
    indices = rng.integers(0, k, size=shape)
    rows = np.arange(groups).reshape(-1, *([1] * (len(shape) - 1))) if groups > 1 else 0
    values = codebook[rows, indices]
    values[rng.random(shape) < sparsity] = 0.0
    return codebook, indices, values


@pytest.mark.parametrize("groups", [1, 32])
@pytest.mark.parametrize("sparsity,layout", [(0.0, "dense"), (0.9, "sparse")])
def test_quantized_round_trip_is_bit_exact(groups, sparsity, layout):
    codebook, indices, values = _quantized((32, 16, 3, 3), groups, 16, sparsity)
    values[(values == 0) & (indices % 2 == 0)] = -0.0  # pruned entries may be -0.0 too
    encoded = encode_quantized("w", codebook, indices, values)
    assert encoded.layout == layout
    assert encoded.codebook.shape[0] == groups
    decoded = decode_tensor(encoded)
    assert decoded.dtype == np.float32 and decoded.shape == values.shape
    assert np.array_equal(decoded.view(np.int32), (values + 0.0).view(np.int32))  # zeros come back +0.0


def test_zero_column_appended_only_when_needed():
    codebook, indices, values = _quantized((64, 64), 1, 8, 0.5)
    assert encode_quantized("w", codebook, indices, values).codebook.shape == (1, 9)
    codebook, indices, values = _quantized((64, 64), 1, 8, 0.5, with_zero_entry=True)
    assert encode_quantized("w", codebook, indices, values).codebook.shape == (1, 8)
    codebook, indices, values = _quantized((64, 64), 1, 8, 0.0)  # no zeros: nothing to append
    assert encode_quantized("w", codebook, indices, values).codebook.shape == (1, 8)


def test_pruned_positions_may_hold_any_index():
    codebook, indices, values = _quantized((40, 40), 1, 4, 0.6)
    indices[values == 0] = 3  # not a zero entry: the codec re-codes them
    assert np.array_equal(decode_tensor(encode_quantized("w", codebook, indices, values)), values)


def _stored_bytes(encoded):
    """Bytes the tensor takes in a file: coded streams with their code-length tables, codebook, raw floats."""
    streams = [s for s in (encoded.values, encoded.index) if s is not None]
    return (sum(len(s.data) + len(s.table_bytes()) for s in streams) + len(encoded.raw or b"")
            + (encoded.codebook.nbytes if encoded.codebook is not None else 0))


def _coded_bytes(symbols):
    stream = CodedStream.of(symbols)
    return len(stream.data) + len(stream.table_bytes())


def test_sparse_chooses_the_width_that_minimises_bytes():
    codebook, indices, values = _quantized((256, 256), 1, 4, 0.97)
    best = encode_quantized("w", codebook, indices, values)
    assert best.layout == "sparse"
    # density 3%: mean gap ~ 32 zeros; a few bits too few costs fillers, many too many costs tables
    assert 4 <= best.index_width <= 8
    assert np.array_equal(decode_tensor(best), values)
    # every alternative, built by hand and measured in real bytes: codebook + zero column (5 x 4 bytes)
    positions = np.flatnonzero(values)
    sizes = {"float32": values.size * 4, "dense": _coded_bytes(np.where(values == 0, 4, indices).ravel()) + 20}
    for width in range(1, sparse.MAX_INDEX_WIDTH + 1):
        skips, is_filler = sparse.relative_indices(positions, width)
        entries = np.full(skips.size, 4)  # fillers take the zero column
        entries[~is_filler] = indices.ravel()[positions]
        sizes[width] = _coded_bytes(entries) + _coded_bytes(skips) + 20
    assert _stored_bytes(best) == sizes[best.index_width] == min(sizes.values()), sizes


def test_large_codebook_falls_back_to_exact_floats():
    codebook, indices, values = _quantized((8, 8), 1, 4096, 0.0)
    encoded = encode_quantized("w", codebook, indices, values)
    assert encoded.raw is not None and encoded.dtype == "float32"
    assert np.array_equal(decode_tensor(encoded), values)


@pytest.mark.parametrize("groups", [1, 16])
@pytest.mark.parametrize("sparsity", [0.0, 0.9])
def test_float16_codebooks_halve_and_decode_to_the_rounded_centroids(groups, sparsity):
    codebook, indices, values = _quantized((16, 8, 3, 3), groups, 8, sparsity)
    full = encode_quantized("w", codebook, indices, values)
    half = encode_quantized("w", codebook, indices, values, "float16")
    assert half.codebook.dtype == np.float16 and half.codebook.nbytes * 2 == full.codebook.nbytes
    rows = np.arange(groups).reshape(-1, 1, 1, 1) if groups > 1 else 0
    expected = np.where(values != 0, codebook.astype(np.float16).astype(np.float32)[rows, indices], 0.0)
    decoded = decode_tensor(half)
    assert decoded.dtype == np.float32 and np.array_equal(decoded, expected)
    assert not np.array_equal(decoded, values)  # the rounding is real
    codebook[0, 0] = 1e6  # beyond float16
    with pytest.raises(ValueError, match="out of float16 range"):
        encode_quantized("w", codebook, indices, np.where(values != 0, codebook[rows, indices], 0.0), "float16")


def test_large_float16_codebook_falls_back_to_float16_values():
    codebook, indices, values = _quantized((8, 8), 1, 4096, 0.0)
    encoded = encode_quantized("w", codebook, indices, values, "float16")
    assert encoded.raw is not None and encoded.dtype == "float16"
    assert np.array_equal(decode_tensor(encoded), values.astype(np.float16).astype(np.float32))


def test_a_representation_that_does_not_match_is_rejected():
    codebook, indices, values = _quantized((8, 8), 1, 4, 0.0)
    values[0, 0] = np.nextafter(values[0, 0], np.float32(np.inf))
    with pytest.raises(ValueError, match="bit-exactly"):
        encode_quantized("w", codebook, indices, values)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_float_round_trip(dtype):
    rng = np.random.default_rng(3)
    values = rng.normal(size=(64, 9)).astype(np.float32)
    values[rng.random(values.shape) < 0.8] = 0
    encoded = encode_float("w", values, dtype)
    assert encoded.layout == "sparse" and encoded.dtype == dtype
    expected = values.astype(dtype).astype(np.float32)
    assert np.array_equal(decode_tensor(encoded), expected)


def test_dense_floats_are_stored_raw_and_overflow_is_refused():
    values = np.arange(1, 13, dtype=np.float32).reshape(3, 4)
    encoded = encode_float("w", values)
    assert encoded.layout == "dense" and len(encoded.raw) == 48
    with pytest.raises(ValueError, match="float16 range"):
        encode_float("w", values * 1e6, "float16")
