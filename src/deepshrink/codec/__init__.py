"""The compressed model file (``.dsz``): sparse relative indices, codebooks and canonical Huffman coding.

- :mod:`~deepshrink.codec.huffman`: canonical Huffman codes (lengths only), vectorised encode/decode;
- :mod:`~deepshrink.codec.sparse`: relative indices with filler entries;
- :mod:`~deepshrink.codec.layer`: one tensor, the cheapest exact dense/sparse/float encoding;
- :mod:`~deepshrink.codec.model`: a whole model (quantizers read through ``quantized_representation``);
- :mod:`~deepshrink.codec.dsz`: the safetensors container, checked on reading;
- :mod:`~deepshrink.codec.report`: per-layer size accounting in real bytes.
"""

from deepshrink.codec.dsz import from_bytes, read_dsz, to_bytes, write_dsz
from deepshrink.codec.files import decode_file, encode_file, load_dsz, save_dsz
from deepshrink.codec.model import EncodedModel, decode_model, encode_model
from deepshrink.codec.report import CodecReport, LayerRow, codec_report, float32_size, format_codec_report

__all__ = [
    "CodecReport", "EncodedModel", "LayerRow", "codec_report", "decode_file", "decode_model", "encode_file",
    "encode_model", "float32_size", "format_codec_report", "from_bytes", "load_dsz", "read_dsz", "save_dsz",
    "to_bytes", "write_dsz",
]
