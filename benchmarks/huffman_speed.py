"""Benchmark: canonical Huffman coding of deepshrink (numpy, table-driven) against the pure-Python
``dahuffman`` package on the same symbol streams, and achieved bits/symbol against the entropy.

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python benchmarks/huffman_speed.py [--checkpoint ../shared/data/pretrained/resnet20-12fca82f.th]

Streams come from the convolution weights of ResNet-20 (the published checkpoint when given,
else a seeded random initialisation), pruned to 30% by global magnitude and quantized to 16
levels at the weight quantiles (k-means "density" initialisation, no iterations):
``dense``: one 4-bit index per weight, pruned weights as a 17th symbol; ``values``: the index
of each non-zero; ``relative``: 5-bit relative indices of the non-zeros (fillers included).
Each stream is tiled to at least --symbols symbols. MB/s counts one byte per symbol.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from deepshrink.codec import huffman, sparse
from deepshrink.models import build_model, make_spec
from deepshrink.models.pretrained import import_pretrained


def conv_weights(checkpoint: str | None) -> np.ndarray:
    """All 3x3 convolution weights of ResNet-20, flattened (float32)."""
    if checkpoint:
        model, _ = import_pretrained("resnet20", checkpoint)
    else:
        torch.manual_seed(0)
        model = build_model(make_spec("resnet20"))
    return torch.cat([m.weight.detach().reshape(-1) for m in model.modules()
                      if isinstance(m, torch.nn.Conv2d)]).numpy()


def streams(weights: np.ndarray, density: float = 0.3) -> dict[str, np.ndarray]:
    threshold = np.quantile(np.abs(weights), 1 - density)
    kept = np.abs(weights) > threshold
    edges = np.quantile(weights[kept], np.linspace(0, 1, 17)[1:-1])
    levels = np.searchsorted(edges, weights)
    positions = np.flatnonzero(kept)
    skips, _ = sparse.relative_indices(positions, 5)
    return {"dense": np.where(kept, levels, 16), "values": levels[kept], "relative": skips}


def ours(symbols: np.ndarray) -> tuple[float, float, float]:
    """(encode MB/s, decode MB/s, bits/symbol)."""
    lengths = huffman.code_lengths(np.bincount(symbols))
    start = time.perf_counter()
    data, bits = huffman.encode(symbols, lengths)
    middle = time.perf_counter()
    back = huffman.decode(data, lengths, symbols.size)
    end = time.perf_counter()
    assert np.array_equal(back, symbols)
    return symbols.size / (middle - start) / 1e6, symbols.size / (end - middle) / 1e6, bits / symbols.size


def theirs(symbols: np.ndarray) -> tuple[float, float, float]:
    from dahuffman import HuffmanCodec

    items = symbols.tolist()
    codec = HuffmanCodec.from_data(items)
    start = time.perf_counter()
    data = codec.encode(items)
    middle = time.perf_counter()
    back = codec.decode(data)
    end = time.perf_counter()
    assert back == items
    return len(items) / (middle - start) / 1e6, len(items) / (end - middle) / 1e6, 8 * len(data) / len(items)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", help="the published resnet20-12fca82f.th")
    parser.add_argument("--symbols", type=int, default=1_000_000, help="tile each stream to this many symbols")
    parser.add_argument("--dahuffman-symbols", type=int, default=200_000,
                        help="symbols given to dahuffman (it is slow)")
    args = parser.parse_args()
    print("| stream | symbols | entropy bits/sym | ours bits/sym | ours encode MB/s | ours decode MB/s "
          "| dahuffman bits/sym | dahuffman encode MB/s | dahuffman decode MB/s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, stream in streams(conv_weights(args.checkpoint)).items():
        tiled = np.tile(stream, -(-args.symbols // stream.size))[:args.symbols]
        enc, dec, bits = ours(tiled)
        their_enc, their_dec, their_bits = theirs(tiled[:args.dahuffman_symbols])
        print(f"| {name} | {tiled.size:,} | {huffman.entropy_bits(tiled):.3f} | {bits:.3f} | {enc:.1f} | {dec:.1f} "
              f"| {their_bits:.3f} | {their_enc:.2f} | {their_dec:.2f} |")


if __name__ == "__main__":
    main()
