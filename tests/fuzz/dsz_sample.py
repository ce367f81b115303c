"""A small real .dsz for the structure-aware fuzzer: digits-cnn pruned 70% and k-means 4-bit
quantized through the library, plus helpers that rewrite its metadata and streams with every
CRC recomputed exactly as :mod:`deepshrink.codec.dsz` writes them."""

import json
import zlib

import numpy as np
import torch
from safetensors.numpy import load, save

from deepshrink.codec.dsz import METADATA_KEY, to_bytes
from deepshrink.codec.model import encode_model
from deepshrink.models import InputSpec, ModelInfo, build_model, make_spec
from deepshrink.prune.api import prune_
from deepshrink.prune.config import PruneConfig
from deepshrink.quant.api import QuantConfig, quantize_


def sample_model():
    """(model, info): digits-cnn, conv2 and conv3 pruned 70% and k-means 4-bit (Huffman-coded,
    sparse), conv1 and fc float32 (dense), BatchNorm statistics non-trivial."""
    spec = make_spec("digits-cnn")
    torch.manual_seed(0)
    model = build_model(spec)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_()
                module.running_var.uniform_(0.5, 2)
    prune_(model, PruneConfig(sparsity=0.7, exclude_first_last=True))
    quantize_(model, QuantConfig(method="kmeans", bits=4, exclude_first_last=True))
    info = ModelInfo(spec, InputSpec((1, 8, 8), (0.3,), (0.4,)), classes=[str(i) for i in range(10)])
    return model.eval(), info


def sample_dsz() -> bytes:
    return to_bytes(encode_model(*sample_model()))


def _compact(value) -> str:
    return json.dumps(value, separators=(",", ":"))


def _deflate(data: bytes) -> bytes:
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return deflater.compress(data) + deflater.flush()


def split(data: bytes):
    """(table, layer table {"columns", "rows"}, tensors {name: array}, the streams after the
    layer table) of a version 5 .dsz file."""
    tensors = load(data)
    header = json.loads(data[8:8 + int.from_bytes(data[:8], "little")])
    table = json.loads(header["__metadata__"][METADATA_KEY])
    size = table["layers"]["bytes"]
    layer_table = json.loads(zlib.decompress(tensors["streams"][:size].tobytes(), -zlib.MAX_WBITS))
    return table, layer_table, tensors, tensors["streams"][size:].tobytes()


def join(table, layer_table, tensors, rest: bytes, fix_crcs: bool = True) -> bytes:
    """The file of these parts: the layer table deflated at the start of the streams, and (with
    ``fix_crcs``) every CRC of the metadata recomputed as the writer computes it."""
    blob = _deflate(_compact(layer_table).encode())
    tensors = dict(tensors)
    tensors["streams"] = np.frombuffer(blob + rest, dtype=np.uint8)
    if fix_crcs and isinstance(table, dict):
        if isinstance(table.get("layers"), dict):
            table["layers"].update(bytes=len(blob), crc32=zlib.crc32(blob))
        for name in ("codebooks", "code_lengths"):
            if name in tensors:
                table[f"{name}_crc32"] = zlib.crc32(np.ascontiguousarray(tensors[name]).tobytes())
        table["crc32"] = zlib.crc32(_compact({k: v for k, v in table.items() if k != "crc32"}).encode())
    return save(tensors, metadata={METADATA_KEY: _compact(table)})
