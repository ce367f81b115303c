"""Benchmark: deepshrink's canonical Huffman coding (new vectorised encoder and lane decoder, and
the previous implementation kept as the reference) against the pure-Python ``dahuffman`` package
and the general-purpose compressors zlib, lzma and zstd, all on the same symbol streams, in one run.

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python benchmarks/huffman_speed.py [--pretrained ../shared/data/pretrained]

Streams (one symbol = one byte for the general-purpose compressors; MB/s counts symbols):

- ``resnet20 values``, ``resnet20 relative`` (and the same for ResNet-56): the streams the
  ``.dsz`` file holds, from the library's own pipeline on the published checkpoints in
  --pretrained (else seeded random initialisations): ``prune_layers`` with global magnitude masks
  to 70 %, ``quantize_`` with 4-bit k-means, ``encode_model``; every layer's codebook indices of
  the stored entries, and every layer's relative indices (skips, fillers included),
  concatenated, at their own length (not tiled: repeated copies would hand the LZ compressors
  matches that real files do not have);
- ``resnet20 dense``: one symbol per weight of the same quantized layers, the 16 k-means indices
  plus a 17th for the pruned weights (the dense layout);
- ``geometric p=0.3``, ``zipf 256``: synthetic skewed streams of --symbols symbols.

Each codec codes each stream --repeats times (one thread); the tables give medians. ``ours``
sizes include the code-length table; the dahuffman codec object (its table) is not counted.
dahuffman runs on the first --dahuffman-symbols symbols only (it is slow); its MB/s are comparable.
Last, the goal case: a 25.6 M-weight layer set (90 % sparse, 4-bit) encoded into its value and
relative-index streams and decoded back, timed end to end.
"""

from __future__ import annotations

import argparse
import lzma
import os
import platform
import statistics
import sys
import time
import zlib

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from deepshrink.codec import huffman, sparse  # noqa: E402
from deepshrink.codec.stream import table_size  # noqa: E402


CHECKPOINTS = {"resnet20": "resnet20-12fca82f.th", "resnet56": "resnet56-4bfd9763.th"}


def model_streams(arch: str, checkpoint: str | None) -> dict[str, np.ndarray]:
    from deepshrink.codec.model import encode_model
    from deepshrink.models import build_model, make_spec
    from deepshrink.models.attach import quantized_representation_of
    from deepshrink.models.pretrained import import_pretrained
    from deepshrink.prune import mask_method, prunable_layers, prune_layers
    from deepshrink.quant import QuantConfig, quantize_

    torch.manual_seed(0)
    model = import_pretrained(arch, checkpoint)[0] if checkpoint else build_model(make_spec(arch))
    prune_layers(model, list(prunable_layers(model)), mask_method("magnitude", scope="global"), 0.7)
    quantize_(model, QuantConfig(method="kmeans", bits=4))
    dense = []
    for module in model.modules():
        representation = quantized_representation_of(module, "weight") if hasattr(module, "weight") else None
        if representation is not None:
            codebook, indices = representation
            weight = module.weight.detach().reshape(-1).numpy()
            dense.append(np.where(weight != 0, indices.reshape(-1).numpy(), codebook.shape[1]))
    encoded = encode_model(model)
    values = [layer.values.decode() for layer in encoded.layers if layer.values is not None]
    skips = [layer.index.decode() for layer in encoded.layers if layer.index is not None]
    streams = {f"{arch} values": np.concatenate(values), f"{arch} dense": np.concatenate(dense)}
    if skips:
        streams[f"{arch} relative"] = np.concatenate(skips)
    return streams


def synthetic_streams(size: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    zipf = np.minimum(rng.zipf(1.3, size) - 1, 255)
    return {"geometric p=0.3": np.minimum(rng.geometric(0.3, size) - 1, 31), "zipf 256": zipf}


def timed(function, repeats: int):
    """(median seconds, last result) of ``repeats`` calls."""
    seconds, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), result


def codecs(symbols: np.ndarray, repeats: int, dahuffman_symbols: int):
    """Rows (name, symbols, encode s, decode s, bytes) of every codec on ``symbols``."""
    lengths = huffman.code_lengths(np.bincount(symbols))
    table = table_size(lengths.size)
    enc, (data, _) = timed(lambda: huffman.encode(symbols, lengths), repeats)
    dec, back = timed(lambda: huffman.decode(data, lengths, symbols.size), repeats)
    assert np.array_equal(back, symbols)
    yield "ours (new)", symbols.size, enc, dec, len(data) + table
    old_enc, (old_data, _) = timed(lambda: huffman._reference_encode(symbols, lengths), max(1, repeats // 2))
    old_dec, back = timed(lambda: huffman._decode_by_pointer_doubling(data, lengths, symbols.size),
                          max(1, repeats // 2))
    assert old_data == data and np.array_equal(back, symbols)  # same bytes, same symbols
    yield "ours (old)", symbols.size, old_enc, old_dec, len(data) + table
    raw = symbols.astype(np.uint8 if symbols.max() < 256 else np.uint16).tobytes()
    try:
        from dahuffman import HuffmanCodec
    except ImportError:
        print("dahuffman not installed: pip install -e '.[bench]'", file=sys.stderr)
    else:
        items = symbols[:dahuffman_symbols].tolist()
        codec = HuffmanCodec.from_data(items)
        their_enc, their = timed(lambda: codec.encode(items), 1)
        their_dec, back = timed(lambda: codec.decode(their), 1)
        assert back == items
        yield "dahuffman", len(items), their_enc, their_dec, len(their) * symbols.size / len(items)
    general = [("zlib -6", lambda b: zlib.compress(b, 6), zlib.decompress),
               ("zlib -9", lambda b: zlib.compress(b, 9), zlib.decompress),
               ("lzma -6", lambda b: lzma.compress(b, preset=6), lzma.decompress)]
    try:
        import zstandard
    except ImportError:
        print("zstandard not installed: pip install -e '.[bench]'", file=sys.stderr)
    else:
        for level in (3, 19):
            compressor = zstandard.ZstdCompressor(level=level, threads=0)
            general.append((f"zstd -{level}", compressor.compress, zstandard.ZstdDecompressor().decompress))
    for name, compress, decompress in general:
        runs = repeats if not name.startswith(("lzma", "zstd -19", "zlib -9")) else max(1, repeats // 2)
        their_enc, packed = timed(lambda: compress(raw), runs)
        their_dec, back = timed(lambda: decompress(packed), runs)
        assert back == raw
        yield name, symbols.size, their_enc, their_dec, len(packed)


def goal_case(weights: int, repeats: int) -> tuple[float, float, int]:
    """Encode and decode seconds and bytes of ``weights`` weights, 90 % zero, 16 levels: the
    values and relative indices as the codec stores them (5-bit skips, fillers as value 0)."""
    rng = np.random.default_rng(1)
    kept = rng.random(weights) < 0.1
    levels = np.minimum(np.abs(rng.normal(0, 4, weights)).astype(np.int64), 15)
    positions = np.flatnonzero(kept)

    def encode():
        skips, is_filler = sparse.relative_indices(positions, 5)
        values = np.zeros(skips.size, dtype=np.int64)
        values[~is_filler] = levels[positions]
        out = []
        for stream in (values, skips):
            lengths = huffman.code_lengths(np.bincount(stream))
            out.append((huffman.encode(stream, lengths)[0], lengths, stream.size))
        return out

    enc, coded = timed(encode, repeats)

    def decode():
        values, skips = (huffman.decode(*stream) for stream in coded)
        dense = np.zeros(weights, dtype=np.int64)
        dense[sparse.positions_from_skips(skips)] = values
        return dense

    dec, dense = timed(decode, repeats)
    assert np.array_equal(dense, np.where(kept, levels, 0))
    return enc, dec, sum(len(stream[0]) for stream in coded)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pretrained", help="folder of the published resnet20/56 checkpoints")
    parser.add_argument("--symbols", type=int, default=1_000_000, help="symbols of each synthetic stream")
    parser.add_argument("--repeats", type=int, default=5, help="runs per codec and stream (medians)")
    parser.add_argument("--dahuffman-symbols", type=int, default=200_000, help="symbols given to dahuffman")
    parser.add_argument("--goal-weights", type=int, default=25_600_000, help="weights of the goal case (0: skip)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}; numpy {np.__version__}, python {platform.python_version()}")
    streams = {}
    for arch, name in CHECKPOINTS.items():
        streams.update(model_streams(arch, os.path.join(args.pretrained, name) if args.pretrained else None))
    streams.update(synthetic_streams(args.symbols))
    print("| stream | symbols | entropy bits/sym | codec | encode MB/s | decode MB/s | bytes | bits/sym "
          "| ours (new) encode / this | ours (new) decode / this |")
    print("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    for name, tiled in streams.items():
        entropy = huffman.entropy_bits(tiled)
        rows = list(codecs(tiled, args.repeats, args.dahuffman_symbols))
        ours_enc, ours_dec = rows[0][1] / rows[0][2], rows[0][1] / rows[0][3]
        for codec, count, enc, dec, size in rows:
            print(f"| {name} | {tiled.size:,} | {entropy:.3f} | {codec} | {count / enc / 1e6:.1f} | "
                  f"{count / dec / 1e6:.1f} | {size:,.0f} | {8 * size / tiled.size:.3f} | "
                  f"{ours_enc / (count / enc):.2f}x | {ours_dec / (count / dec):.2f}x |")
    if args.goal_weights:
        enc, dec, size = goal_case(args.goal_weights, max(1, args.repeats // 2))
        print(f"\n{args.goal_weights:,} weights, 90 % sparse, 4-bit (values + 5-bit relative indices, "
              f"{size:,} bytes): encode {enc:.2f} s, decode {dec:.2f} s")


if __name__ == "__main__":
    main()
