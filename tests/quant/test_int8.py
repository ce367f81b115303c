"""int8 ONNX export: the graph really holds int8 weights and QDQ/QLinear ops, and ONNX Runtime's
int8 outputs agree with the float model's."""

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from deepshrink.data import BatchLoader, load_dataset
from deepshrink.errors import UserError
from deepshrink.pipeline.train import train_job
from deepshrink.quant.int8 import export_int8_onnx
from deepshrink.quant.onnx_export import baked_copy, export_onnx, load_onnx
from deepshrink.train import TrainConfig


@pytest.fixture(scope="module")
def trained():
    train_set, test_set = load_dataset("synthetic", "train"), load_dataset("synthetic", "test")
    config = TrainConfig(epochs=2, batch_size=32, lr=0.05, progress=False)
    trainer, _ = train_job(train_set, test_set, config, model_name="digits-cnn")
    model = trainer.model.to(memory_format=torch.contiguous_format).eval()
    return model, trainer.info, train_set, test_set


def _batches(dataset, info, n=128):
    return [x for x, _ in BatchLoader(dataset.subset(n), 64, mean=info.input.mean, std=info.input.std)]


def test_float_onnx_matches_torch(trained, tmp_path):
    model, info, _, test_set = trained
    path = export_onnx(model, info, tmp_path / "m.onnx")
    onnx_model, back = load_onnx(path)
    assert back.arch == info.arch
    x = _batches(test_set, info)[0]
    torch.testing.assert_close(onnx_model(x), model(x).detach(), rtol=1e-4, atol=1e-4)


def test_int8_graph_computes_in_int8_and_agrees(trained, tmp_path):
    model, info, train_set, test_set = trained
    path = export_int8_onnx(model, info, tmp_path / "q.onnx", _batches(train_set, info),
                            )
    graph = onnx.load(str(path))
    ops = {node.op_type for node in graph.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    int8_weights = [i for i in graph.graph.initializer
                    if len(i.dims) == 4 and numpy_helper.to_array(i).dtype == np.int8]
    assert len(int8_weights) == 3  # every conv weight is stored as int8
    int8_model, back = load_onnx(path)
    assert back.history[-1]["format"] == "int8-onnx"
    x = torch.cat(_batches(test_set, info))
    ref = model(x).detach()
    out = int8_model(x)
    assert (out.argmax(1) == ref.argmax(1)).float().mean() >= 0.95
    assert (out - ref).abs().max() < 0.1 * ref.abs().max()


def test_keep_float_leaves_named_layers_in_float(trained, tmp_path):
    model, info, train_set, _ = trained
    first = next(n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d))
    path = export_int8_onnx(model, info, tmp_path / "q.onnx", _batches(train_set, info), keep_float=[first])
    graph = onnx.load(str(path))
    int8_4d = [i for i in graph.graph.initializer
               if len(i.dims) == 4 and numpy_helper.to_array(i).dtype == np.int8]
    assert len(int8_4d) == 2
    # the float one is the named layer's: its Conv reads a float32 initializer directly, no DequantizeLinear
    values = {i.name: numpy_helper.to_array(i) for i in graph.graph.initializer}
    producers = {out: node for node in graph.graph.node for out in node.output}
    convs = {node.name: node for node in graph.graph.node if node.op_type == "Conv"}
    assert len(convs) == 3
    kept = convs[f"/{first}/Conv"]
    assert kept.input[1] in values and values[kept.input[1]].dtype == np.float32
    assert all(producers[node.input[1]].op_type == "DequantizeLinear" for name, node in convs.items()
               if name != f"/{first}/Conv")


def test_bad_inputs(trained, tmp_path):
    model, info, _, _ = trained
    with pytest.raises(UserError, match="calibration images"):
        export_int8_onnx(model, info, tmp_path / "q.onnx", [])
    with pytest.raises(UserError, match="unknown calibration"):
        export_int8_onnx(model, info, tmp_path / "q.onnx", [torch.zeros(1, 3, 16, 16)], method="magic")
    assert not (tmp_path / "q.onnx").exists()
    (tmp_path / "junk.onnx").write_bytes(b"not onnx")
    with pytest.raises(UserError):
        load_onnx(tmp_path / "junk.onnx")


class _ZeroFirstFilter(torch.nn.Module):
    def forward(self, weight):
        return torch.cat([torch.zeros_like(weight[:1]), weight[1:]])


def test_baked_copy_replaces_parametrizations_by_their_values(trained):
    import copy

    from torch.nn.utils import parametrize

    model, *_ = trained
    model = copy.deepcopy(model)
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    parametrize.register_parametrization(conv, "weight", _ZeroFirstFilter())
    clone = baked_copy(model)
    baked = next(m for m in clone.modules() if isinstance(m, torch.nn.Conv2d))
    assert not parametrize.is_parametrized(baked)
    assert torch.equal(baked.weight, conv.weight.detach())
    assert baked.weight[0].abs().sum() == 0
    assert parametrize.is_parametrized(conv)  # the original is untouched
