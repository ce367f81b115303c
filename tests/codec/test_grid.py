import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from deepshrink.codec.grid import Grid, detect_grid, offset_bytes, read_grid
from deepshrink.codec.layer import decode_tensor, encode_quantized
from deepshrink.quant.quantizers import LinearQuantizer


def _linear_codebook(weight, bits, symmetric, per_channel):
    codebook, indices = LinearQuantizer(bits, symmetric, per_channel).quantized_representation(weight)
    return codebook.numpy(), indices.numpy()


@settings(max_examples=60, deadline=None)
@given(bits=st.sampled_from([2, 3, 4, 5, 8]), symmetric=st.booleans(), per_channel=st.booleans(),
       seed=st.integers(0, 2**16), spread=st.floats(1e-6, 1e3), positive=st.booleans())
def test_every_linear_quantizer_codebook_is_an_exact_grid(bits, symmetric, per_channel, seed, spread, positive):
    torch.manual_seed(seed)
    weight = torch.randn(6, 3, 3, 3) * spread
    if positive:  # zero level at the edge of the grid: the scale is read on the other side
        weight = weight.abs()
    weight[2] = 0.0  # an all-zero channel (scale 1)
    codebook, _ = _linear_codebook(weight, bits, symmetric, per_channel)
    grid = detect_grid(codebook, "float32")
    assert grid is not None and grid.levels == codebook.shape[1]
    assert np.array_equal(grid.codebook().view(np.int32), codebook.view(np.int32))
    assert grid.nbytes == grid.scales.size * 4 + offset_bytes(grid.scales.size, grid.levels)


def test_codebooks_that_are_not_grids_are_refused():
    rng = np.random.default_rng(0)
    centroids = np.sort(rng.normal(size=(1, 16)).astype(np.float32), axis=1)
    assert detect_grid(centroids, "float32") is None  # no zero entry
    centroids[0, 3] = 0.0
    assert detect_grid(centroids, "float32") is None  # a zero, but uneven steps
    almost = np.arange(-3, 5, dtype=np.float32)[None, :] * np.float32(0.1)
    almost[0, -1] = np.nextafter(almost[0, -1], np.float32(1))  # one ulp off
    assert detect_grid(almost, "float32") is None
    assert detect_grid(np.zeros((1, 1), np.float32), "float32") is None  # one level


def test_float16_scales_round_and_vanishing_ones_refuse_the_grid():
    codebook = np.float32(0.1) * (np.arange(8, dtype=np.float32) - np.float32(3))[None, :]
    grid = detect_grid(codebook, "float16")
    assert grid.scales.dtype == np.float16 and grid.scales[0] == np.float16(0.1)
    assert np.array_equal(grid.codebook(), np.float32(np.float16(0.1)) * (np.arange(8, dtype=np.float32) - 3)[None, :])
    assert detect_grid(codebook * np.float32(1e-9), "float16") is None  # the scale underflows


def test_read_grid_inverts_packing_and_checks_its_values():
    grid = Grid(np.array([0.5, 2.0, 1.0], np.float32), np.array([0, 7, 3]), 8)
    packed = grid.packed_offsets()
    assert len(packed) == offset_bytes(3, 8) == 2  # 3 bits each
    back = read_grid(grid.scales, packed, 8)
    assert np.array_equal(back.offsets, grid.offsets) and np.array_equal(back.codebook(), grid.codebook())
    with pytest.raises(ValueError, match="outside its 6 levels"):
        read_grid(grid.scales, packed, 6)
    with pytest.raises(ValueError, match="positive"):
        read_grid(np.array([0.5, -2.0, 1.0], np.float32), packed, 8)
    with pytest.raises(ValueError, match="cannot hold"):
        read_grid(grid.scales, packed[:1], 8)


@pytest.mark.parametrize("symmetric,per_channel", [(False, True), (True, True), (False, False)])
def test_a_linear_layer_is_stored_as_a_grid_and_decodes_bit_exactly(symmetric, per_channel):
    torch.manual_seed(0)
    weight = torch.randn(32, 16, 3, 3) * (torch.rand(32, 1, 1, 1) + 0.1)
    weight[torch.rand_like(weight) < 0.8] = 0.0
    quantizer = LinearQuantizer(3, symmetric, per_channel)
    codebook, indices = quantizer.quantized_representation(weight)
    values = quantizer(weight).numpy()
    encoded = encode_quantized("w", codebook.numpy(), indices.numpy(), values)
    assert encoded.grid is not None and encoded.layout == "sparse"
    rows = 32 if per_channel else 1
    assert encoded.codebook_bytes == rows * 4 + offset_bytes(rows, codebook.shape[1]) < codebook.numpy().nbytes
    decoded = decode_tensor(encoded)
    assert np.array_equal(decoded.view(np.int32), (values + 0.0).view(np.int32))
    half = encode_quantized("w", codebook.numpy(), indices.numpy(), values, "float16")
    scales = half.grid.scales.astype(np.float32).reshape(-1, 1, 1, 1)
    levels = indices.numpy().astype(np.float32) - half.grid.offsets.reshape(-1, 1, 1, 1)
    assert np.array_equal(decode_tensor(half), np.where(values != 0, scales * levels, 0).astype(np.float32))
